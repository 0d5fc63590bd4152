//! All SQL lives here. Every state change is a compare-and-set on the status the
//! caller observed; claims take rows with `FOR UPDATE SKIP LOCKED`, so concurrent
//! callers never wait on or take the same row.

pub mod instances;
pub mod jobs;
pub mod rate_limit;

pub use instances::{Counts, InstanceRow};
pub use jobs::{JobRow, JobState, NewJob};
