//! What an apply needs to know from a saved plan file, read without running the engine.
//!
//! A Terraform/OpenTofu saved plan is a zip archive holding, among others, `tfplan` (the plan
//! as protobuf, with the backend it was made with), `tfstate` (the prior state the plan was
//! made against) and `.terraform.lock.hcl` (the providers it needs, with their checksums). The
//! engine applies a saved plan with the configuration and backend recorded in the file, so:
//!
//! - a plan whose lock file names no provider (only the engine's built-in `terraform_data`)
//!   applies without `init`: there is nothing to install;
//! - the prior state's serial and lineage are what the engine compares with the current state
//!   before applying (a difference is the "Saved plan is stale" refusal);
//! - with a `local` backend in the default workspace the state is a file whose path the plan
//!   names, which sluice reads directly instead of asking the engine (`state pull`).
//!
//! Anything this module cannot read (another archive layout, zip64, an unknown encoding) is
//! `None`, and the caller falls back to asking the engine; it never guesses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::apply::{StateInfo, state_info};

/// The facts of one saved plan file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanFacts {
    /// Provider addresses the plan's lock file names; `None` when the file has no lock file
    /// (or it cannot be read): then `init` is needed.
    pub providers: Option<Vec<String>>,
    /// The state the plan was made against; `None` when there was none (no lineage yet).
    pub prior: Option<StateInfo>,
    pub backend: Option<Backend>,
}

/// The backend recorded in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `local`, `s3`, `http`, …
    pub kind: String,
    pub workspace: String,
    /// The backend's string attributes (`None` for an unset one); others are left out.
    pub config: BTreeMap<String, Option<String>>,
}

impl PlanFacts {
    pub fn read(plan: &[u8]) -> PlanFacts {
        let Some(zip) = Zip::open(plan) else {
            return PlanFacts::default();
        };
        PlanFacts {
            providers: zip
                .entry(".terraform.lock.hcl")
                .map(|b| lock_providers(&String::from_utf8_lossy(&b))),
            prior: zip
                .entry("tfstate")
                .and_then(|b| state_info(&b))
                // An empty state (nothing applied yet) has no lineage.
                .filter(|s| !s.lineage.is_empty()),
            backend: zip.entry("tfplan").and_then(|b| backend(&b)),
        }
    }

    /// Whether the work dir in `work_dir` must be initialised before the engine applies this
    /// plan: unless the plan's lock file is known to name no provider (nothing to install) and
    /// the state is a local file sluice reads itself (`state pull` needs an initialised
    /// backend; `apply PLANFILE` takes the backend from the plan).
    pub fn needs_init(&self, work_dir: &Path) -> bool {
        self.providers.as_ref().is_none_or(|p| !p.is_empty())
            || self.local_state_file(work_dir).is_none()
    }

    /// The state file the engine reads and writes, when the plan's backend is `local` in the
    /// default workspace; relative paths are the engine's, from `work_dir`.
    pub fn local_state_file(&self, work_dir: &Path) -> Option<PathBuf> {
        let b = self.backend.as_ref()?;
        if b.kind != "local" || b.workspace != "default" {
            return None;
        }
        let path = match b.config.get("path") {
            Some(Some(p)) if !p.is_empty() => PathBuf::from(p),
            Some(None) | None => PathBuf::from("terraform.tfstate"),
            Some(Some(_)) => return None,
        };
        Some(if path.is_absolute() {
            path
        } else {
            work_dir.join(path)
        })
    }
}

/// The `provider "ADDRESS"` blocks of a dependency lock file.
pub fn lock_providers(hcl: &str) -> Vec<String> {
    hcl.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("provider")?.trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

/// The entries of a zip archive (no zip64: a plan file is far below 4 GiB).
struct Zip<'a> {
    bytes: &'a [u8],
    /// name → (method, compressed size, uncompressed size, local header offset)
    entries: BTreeMap<String, (u16, usize, usize, usize)>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

impl<'a> Zip<'a> {
    fn open(bytes: &'a [u8]) -> Option<Zip<'a>> {
        const EOCD: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
        const CENTRAL: usize = 0x0201_4b50;
        // The end record is the last 22 bytes plus a comment of at most 65,535 bytes.
        let floor = bytes.len().saturating_sub(22 + 65_535);
        let eocd = (floor..=bytes.len().checked_sub(22)?)
            .rev()
            .find(|&i| bytes[i..i + 4] == EOCD)?;
        let count = u16_at(bytes, eocd + 10)? as usize;
        let mut at = u32_at(bytes, eocd + 16)?;
        let mut entries = BTreeMap::new();
        for _ in 0..count {
            if u32_at(bytes, at)? != CENTRAL {
                return None;
            }
            let method = u16_at(bytes, at + 10)?;
            let compressed = u32_at(bytes, at + 20)?;
            let size = u32_at(bytes, at + 24)?;
            let name_len = u16_at(bytes, at + 28)? as usize;
            let extra_len = u16_at(bytes, at + 30)? as usize;
            let comment_len = u16_at(bytes, at + 32)? as usize;
            let local = u32_at(bytes, at + 42)?;
            let name = bytes.get(at + 46..at + 46 + name_len)?;
            entries.insert(
                String::from_utf8_lossy(name).into_owned(),
                (method, compressed, size, local),
            );
            at += 46 + name_len + extra_len + comment_len;
        }
        Some(Zip { bytes, entries })
    }

    fn entry(&self, name: &str) -> Option<Vec<u8>> {
        const LOCAL: usize = 0x0403_4b50;
        let &(method, compressed, size, local) = self.entries.get(name)?;
        if u32_at(self.bytes, local)? != LOCAL {
            return None;
        }
        let start = local
            + 30
            + u16_at(self.bytes, local + 26)? as usize
            + u16_at(self.bytes, local + 28)? as usize;
        let data = self.bytes.get(start..start.checked_add(compressed)?)?;
        match method {
            0 => Some(data.to_vec()),
            8 => inflate(data, size),
            _ => None,
        }
    }
}

/// A raw deflate stream of `size` bytes once inflated.
fn inflate(data: &[u8], size: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; size];
    let mut inflater = zlib_rs::Inflate::new(false, 15);
    match inflater.decompress(data, &mut out, zlib_rs::InflateFlush::Finish) {
        Ok(zlib_rs::Status::StreamEnd) if inflater.total_out() as usize == size => Some(out),
        _ => None,
    }
}

/// Protobuf: the length-delimited fields of one message as (number, bytes); the others are
/// skipped (nothing read here is a number).
fn fields(mut b: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        match key & 7 {
            0 => {
                varint(&mut b)?;
            }
            1 => b = b.get(8..)?,
            5 => b = b.get(4..)?,
            2 => {
                let len = usize::try_from(varint(&mut b)?).ok()?;
                out.push((key >> 3, b.get(..len)?));
                b = &b[len..];
            }
            _ => return None,
        }
    }
    Some(out)
}

/// `Plan.backend` (field 13): `Backend { type = 1; DynamicValue config = 2; workspace = 3 }`,
/// `DynamicValue { bytes msgpack = 1 }`.
fn backend(tfplan: &[u8]) -> Option<Backend> {
    let (_, message) = fields(tfplan)?.into_iter().find(|(n, _)| *n == 13)?;
    let mut kind = None;
    let mut workspace = String::new();
    let mut config = BTreeMap::new();
    for (n, v) in fields(message)? {
        match n {
            1 => kind = Some(String::from_utf8(v.to_vec()).ok()?),
            2 => {
                let (_, msgpack) = fields(v)?.into_iter().find(|(n, _)| *n == 1)?;
                config = msgpack_string_map(msgpack)?;
            }
            3 => workspace = String::from_utf8(v.to_vec()).ok()?,
            _ => {}
        }
    }
    Some(Backend {
        kind: kind?,
        workspace,
        config,
    })
}

/// A msgpack map whose keys are strings; string and nil values are kept, one-byte scalars are
/// skipped, and any other value makes the whole map unreadable.
fn msgpack_string_map(b: &[u8]) -> Option<BTreeMap<String, Option<String>>> {
    let mut c = Cursor { b, at: 0 };
    let head = c.take(1)?[0];
    let len = match head {
        0x80..=0x8f => (head & 0x0f) as usize,
        0xde => u16::from_be_bytes(c.take(2)?.try_into().ok()?) as usize,
        _ => return None,
    };
    let mut out = BTreeMap::new();
    for _ in 0..len {
        let Item::Str(key) = c.item()? else {
            return None;
        };
        match c.item()? {
            Item::Str(v) => {
                out.insert(key, Some(v));
            }
            Item::Nil => {
                out.insert(key, None);
            }
            Item::Other => {}
        }
    }
    Some(out)
}

enum Item {
    Str(String),
    Nil,
    Other,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn item(&mut self) -> Option<Item> {
        let t = self.take(1)?[0];
        let str_len = match t {
            0xa0..=0xbf => (t & 0x1f) as usize,
            0xd9 => self.take(1)?[0] as usize,
            0xda => u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize,
            0xdb => u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize,
            0xc0 => return Some(Item::Nil),
            // Booleans and fixints: one byte.
            0xc2 | 0xc3 | 0x00..=0x7f | 0xe0..=0xff => return Some(Item::Other),
            _ => return None,
        };
        Some(Item::Str(
            String::from_utf8(self.take(str_len)?.to_vec()).ok()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_name_their_providers() {
        assert!(lock_providers("# This file is maintained automatically by \"terraform init\".\n# Manual edits may be lost in future updates.\n").is_empty());
        let hcl = "provider \"registry.terraform.io/hashicorp/null\" {\n  version = \"3.2.1\"\n}\n\nprovider \"registry.opentofu.org/hashicorp/random\" {\n}\n";
        assert_eq!(
            lock_providers(hcl),
            vec![
                "registry.terraform.io/hashicorp/null",
                "registry.opentofu.org/hashicorp/random"
            ]
        );
    }

    #[test]
    fn only_no_providers_and_a_local_state_skip_init() {
        let dir = Path::new("/work/x");
        let mut f = backend_facts("local", "default", Some("/s/terraform.tfstate"));
        assert!(f.needs_init(dir), "no lock file read: init");
        f.providers = Some(vec![]);
        assert!(!f.needs_init(dir));
        f.providers = Some(vec!["registry.terraform.io/hashicorp/null".into()]);
        assert!(f.needs_init(dir));
        let mut remote = backend_facts("s3", "default", None);
        remote.providers = Some(vec![]);
        assert!(
            remote.needs_init(dir),
            "state pull needs the backend initialised"
        );
    }

    #[test]
    fn msgpack_backend_config() {
        // {"path": "/tmp/s/terraform.tfstate", "workspace_dir": nil}, as Terraform writes it.
        let mut b = vec![0x82, 0xa4];
        b.extend_from_slice(b"path");
        b.push(0xd9);
        b.push(24);
        b.extend_from_slice(b"/tmp/s/terraform.tfstate");
        b.push(0xad);
        b.extend_from_slice(b"workspace_dir");
        b.push(0xc0);
        let map = msgpack_string_map(&b).unwrap();
        assert_eq!(map["path"].as_deref(), Some("/tmp/s/terraform.tfstate"));
        assert_eq!(map["workspace_dir"], None);
        assert!(
            msgpack_string_map(&[0x81, 0xa1, b'a', 0xcb]).is_none(),
            "a float is not read"
        );
        assert!(msgpack_string_map(&[0x92]).is_none(), "not a map");
    }

    fn backend_facts(kind: &str, workspace: &str, path: Option<&str>) -> PlanFacts {
        PlanFacts {
            backend: Some(Backend {
                kind: kind.into(),
                workspace: workspace.into(),
                config: [("path".to_string(), path.map(str::to_string))]
                    .into_iter()
                    .collect(),
            }),
            ..PlanFacts::default()
        }
    }

    #[test]
    fn only_a_local_backend_in_the_default_workspace_is_read_directly() {
        let dir = Path::new("/work/x");
        assert_eq!(
            backend_facts("local", "default", Some("/s/terraform.tfstate")).local_state_file(dir),
            Some(PathBuf::from("/s/terraform.tfstate"))
        );
        assert_eq!(
            backend_facts("local", "default", None).local_state_file(dir),
            Some(PathBuf::from("/work/x/terraform.tfstate"))
        );
        assert_eq!(
            backend_facts("local", "staging", Some("/s/t")).local_state_file(dir),
            None
        );
        assert_eq!(
            backend_facts("s3", "default", None).local_state_file(dir),
            None
        );
        assert_eq!(PlanFacts::default().local_state_file(dir), None);
    }

    #[test]
    fn unreadable_files_are_no_facts() {
        assert_eq!(PlanFacts::read(b"not a zip"), PlanFacts::default());
        assert_eq!(PlanFacts::read(b""), PlanFacts::default());
        let mut truncated = vec![0u8; 40];
        truncated.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06]);
        truncated.extend_from_slice(&[0, 0, 0, 0, 5, 0, 5, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(PlanFacts::read(&truncated), PlanFacts::default());
    }
}
