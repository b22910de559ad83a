//! The one integration-test binary: each module is a family of tests.

mod storage_conformance;
