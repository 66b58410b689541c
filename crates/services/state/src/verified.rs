//! The bodies this process has already decrypted and checked, so that a `GET` of a head that
//! has not changed answers without decrypting, hashing and parsing the whole state again.
//!
//! Opening a version is a pure function of its record, its sealed bytes and the keys: the
//! body opens with the record's digest as associated data, hashes to that digest and carries
//! the recorded serial and lineage, or the version is reported tampered. So an entry is reused
//! only when the record just read and the sealed bytes just read are both *equal* to the ones
//! it was checked from, byte for byte. The sealed bytes are still read from the store on every
//! `GET` and compared: a blob or a record changed in the database since it was checked is not
//! equal, misses here, and is opened (and found tampered) as before. What the cache saves is
//! the CPU work (AES-GCM, SHA-256, the JSON scan), not the read.
//!
//! One entry per unit (its head), within a byte budget; a version the backend writes is entered
//! as it is written (its plaintext and the sealed bytes it stored), so the first `GET` after a
//! `POST` is answered from here too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_store::StateVersionRecord;

/// The bytes the cache may hold (plaintext and sealed bytes of every entry, together).
pub const DEFAULT_BUDGET: usize = 64 << 20;

struct Entry {
    record: StateVersionRecord,
    sealed: Arc<Vec<u8>>,
    body: Arc<Vec<u8>>,
    /// When it was entered, for eviction (oldest first).
    stamp: u64,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.sealed.len() + self.body.len()
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    bytes: usize,
    clock: u64,
}

/// See the module documentation. Cheap to share: one lock around a small map.
pub struct Verified {
    inner: Mutex<Inner>,
    budget: usize,
}

/// Whether an entry checked from (`checked`, `checked_sealed`) stands for a version read as
/// (`record`, `sealed`): only if both are equal, byte for byte.
pub fn reusable(
    checked: &StateVersionRecord,
    checked_sealed: &[u8],
    record: &StateVersionRecord,
    sealed: &[u8],
) -> bool {
    checked == record && checked_sealed == sealed
}

impl Verified {
    pub fn new(budget: usize) -> Verified {
        Verified {
            inner: Mutex::new(Inner::default()),
            budget,
        }
    }

    /// The checked body of `record` if it was opened from exactly these sealed bytes.
    pub fn get(&self, record: &StateVersionRecord, sealed: &[u8]) -> Option<Vec<u8>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = inner.entries.get(&record.unit)?;
        reusable(&entry.record, &entry.sealed, record, sealed).then(|| entry.body.to_vec())
    }

    /// Enters `body`, checked (or just written) as `record` with sealed bytes `sealed`, as its
    /// unit's entry; the oldest entries make room if the budget is exceeded. A version larger
    /// than the whole budget is not kept.
    pub fn put(&self, record: &StateVersionRecord, sealed: Vec<u8>, body: Vec<u8>) {
        let entry_bytes = sealed.len() + body.len();
        if entry_bytes > self.budget {
            self.forget(&record.unit);
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.clock += 1;
        let entry = Entry {
            record: record.clone(),
            sealed: Arc::new(sealed),
            body: Arc::new(body),
            stamp: inner.clock,
        };
        if let Some(old) = inner.entries.insert(record.unit.clone(), entry) {
            inner.bytes -= old.bytes();
        }
        inner.bytes += entry_bytes;
        while inner.bytes > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.stamp)
                .map(|(unit, _)| unit.clone())
            else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.bytes();
            }
        }
    }

    /// Drops `unit`'s entry.
    pub fn forget(&self, unit: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(gone) = inner.entries.remove(unit) {
            inner.bytes -= gone.bytes();
        }
    }

    /// The bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_store::Digest;

    fn record(unit: &str, version: u64) -> StateVersionRecord {
        StateVersionRecord {
            unit: unit.into(),
            version,
            digest: Digest::of(format!("{unit}{version}").as_bytes()),
            serial: version,
            lineage: "lin".into(),
            size: 3,
            md5: None,
            identity: "me".into(),
            lock_id: None,
            fencing_token: None,
            forced_reason: None,
            rollback_of: None,
            created_at: 7,
        }
    }

    #[test]
    fn only_the_same_record_and_sealed_bytes_are_reused() {
        let cache = Verified::new(1 << 20);
        let r = record("a", 1);
        cache.put(&r, b"sealed".to_vec(), b"body".to_vec());
        assert_eq!(cache.get(&r, b"sealed").as_deref(), Some(&b"body"[..]));
        // One bit of the blob changed in the database: not the bytes that were checked.
        assert_eq!(cache.get(&r, b"sealeD"), None);
        // A record changed in the database (its serial), with the same blob.
        let mut moved = r.clone();
        moved.serial = 9;
        assert_eq!(cache.get(&moved, b"sealed"), None);
        // A newer head of the unit.
        assert_eq!(cache.get(&record("a", 2), b"sealed"), None);
        assert_eq!(cache.get(&record("b", 1), b"sealed"), None);
    }

    #[test]
    fn a_new_version_replaces_its_unit_and_the_budget_holds() {
        let cache = Verified::new(40);
        cache.put(&record("a", 1), vec![1; 10], vec![2; 10]);
        cache.put(&record("a", 2), vec![1; 10], vec![3; 10]);
        assert_eq!(cache.bytes(), 20);
        assert_eq!(cache.get(&record("a", 1), &[1; 10]), None);
        assert_eq!(cache.get(&record("a", 2), &[1; 10]), Some(vec![3; 10]));
        // A second unit fits; a third evicts the oldest.
        cache.put(&record("b", 1), vec![1; 10], vec![4; 10]);
        assert_eq!(cache.bytes(), 40);
        cache.put(&record("c", 1), vec![1; 10], vec![5; 10]);
        assert_eq!(cache.bytes(), 40);
        assert_eq!(cache.get(&record("a", 2), &[1; 10]), None);
        assert!(cache.get(&record("b", 1), &[1; 10]).is_some());
        // Larger than the whole budget: not kept, and the unit's older entry goes too.
        cache.put(&record("b", 2), vec![1; 30], vec![6; 30]);
        assert_eq!(cache.get(&record("b", 1), &[1; 10]), None);
        assert_eq!(cache.bytes(), 20);
        cache.forget("c");
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn reusable_is_equality_of_both() {
        let r = record("a", 1);
        assert!(reusable(&r, b"x", &r, b"x"));
        assert!(!reusable(&r, b"x", &r, b"y"));
        assert!(!reusable(&r, b"x", &record("a", 2), b"x"));
    }
}
