//! Integration tests against the real Docker engine.
//!
//! Each test builds what it needs with uniquely named volumes, containers
//! and a private repository, runs the lifeboat binary, and checks the
//! result with tools that do not trust lifeboat: busybox inside containers
//! and the restic CLI. Everything a test creates is removed when it ends,
//! pass or fail. The images come from `testing/build-images.sh`.

mod support;

mod audit;
mod bad_input;
mod binds;
mod check;
mod databases;
mod first_use;
mod hardening;
mod hooks;
mod inventory;
mod locks;
mod prune;
mod retention;
mod roundtrip;
mod stopping;
