//! Placeholder replaced by the decode+verify benchmark.

fn main() {}
