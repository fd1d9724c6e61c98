//! The storage conformance suite against every implementation.

use std::sync::Arc;

use runnel_log::testing::{storage_conformance, FaultyStorage, PowerLossStorage};
use runnel_log::FsStorage;

#[test]
fn given_fs_storage_should_pass_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    storage_conformance(&FsStorage::new(), dir.path());
}

#[test]
fn given_faulty_storage_in_pass_through_mode_should_pass_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new(Arc::new(FsStorage::new()));
    storage_conformance(&*storage, dir.path());
    assert_eq!(storage.injected_count(), 0);
    assert!(storage.write_count() > 0 && storage.sync_count() > 0);
}

#[test]
fn given_power_loss_storage_without_a_power_loss_should_pass_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let storage = PowerLossStorage::new(Arc::new(FsStorage::new()));
    storage_conformance(&*storage, dir.path());
}
