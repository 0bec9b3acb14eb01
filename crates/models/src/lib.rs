//! rlvr models
