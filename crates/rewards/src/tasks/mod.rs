//! Built-in tasks generated from a seed: the toy tree of SimKO's Fig. 5 and countdown arithmetic.

pub mod countdown;
pub mod toy_tree;
