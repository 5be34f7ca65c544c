//! Table-driven tests of the Job controller's pure decisions.
