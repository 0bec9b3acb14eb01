//! rlvr rewards
