//! rlvr cli
