//! Pieces acting on a rollout batch between scoring and advantages (DAPO, arXiv 2503.14476):
//! the overlong reward shaping ([`overlong`]) and dynamic sampling ([`dynamic_sampling`]).

pub mod dynamic_sampling;
pub mod overlong;
