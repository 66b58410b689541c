//! The `people:` registry of `sluice.yaml`: who may approve from the command line, the emails
//! that tie a person to commit authors, the groups they approve for and the public keys that
//! prove it is them (`sluice approve --as NAME --key FILE`).
//!
//! Only the shape and the pure lookups live here; the config loader reads the YAML (with
//! positions) and the evidence adapter verifies signatures against `keys`. In server mode the
//! same questions are answered by the VCS host (GitHub logins and team membership) instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::binding::{Approval, ApprovalState, Binding, Membership};

/// A person's stable name: the key under `people:` (CLI mode) or a GitHub login (server mode).
///
/// Compared without regard to ASCII case, as GitHub compares logins: `Alice` and `alice` are one
/// person, so one person can never be counted twice by spelling their name differently.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct PersonId(String);

impl PersonId {
    pub fn new(name: &str) -> Self {
        PersonId(name.to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for PersonId {
    fn from(name: String) -> Self {
        PersonId::new(&name)
    }
}

impl From<PersonId> for String {
    fn from(id: PersonId) -> Self {
        id.0
    }
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of `people:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Commit author emails that are this person.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Teams this person approves for (`@acme/platform`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// OpenSSH (`ssh-ed25519 AAAA… alice`) or PEM public keys, kept as written.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// `people:`: name → person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct People {
    persons: BTreeMap<PersonId, Person>,
}

/// Who a commit author email is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorLookup<'a> {
    Person(&'a PersonId),
    /// No registered person lists this email.
    Unknown,
    /// Several people list it (a config error [`People::shared_emails`] reports); all of them
    /// are treated as the author, so none of them can approve the change.
    Ambiguous(Vec<&'a PersonId>),
}

impl<'a> AuthorLookup<'a> {
    /// Everyone who may be the author: the people barred from approving the change.
    pub fn candidates(&self) -> Vec<&'a PersonId> {
        match self {
            AuthorLookup::Person(p) => vec![*p],
            AuthorLookup::Unknown => Vec::new(),
            AuthorLookup::Ambiguous(ps) => ps.clone(),
        }
    }
}

/// Why `sluice approve --as NAME` cannot record an approval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApproveError {
    #[error("`{0}` is not registered under `people:` in sluice.yaml")]
    UnknownPerson(String),
    #[error("{0} authored this change and cannot approve it")]
    SelfApproval(PersonId),
}

impl People {
    pub fn new<I: IntoIterator<Item = (PersonId, Person)>>(persons: I) -> Self {
        People {
            persons: persons.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Person> {
        self.persons.get(&PersonId::new(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PersonId, &Person)> {
        self.persons.iter()
    }

    pub fn len(&self) -> usize {
        self.persons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.persons.is_empty()
    }

    /// The person whose `emails` list `email`. Emails compare without regard to ASCII case:
    /// mail systems treat them so in practice, and a case change must not let an author pass
    /// as someone else.
    pub fn author(&self, email: &str) -> AuthorLookup<'_> {
        let email = email.trim();
        let found: Vec<&PersonId> = self
            .persons
            .iter()
            .filter(|(_, p)| p.emails.iter().any(|e| e.eq_ignore_ascii_case(email)))
            .map(|(id, _)| id)
            .collect();
        match found.as_slice() {
            [] => AuthorLookup::Unknown,
            [one] => AuthorLookup::Person(one),
            _ => AuthorLookup::Ambiguous(found),
        }
    }

    /// Emails listed by more than one person, each with those people: the loader reports them,
    /// because an email must name exactly one author.
    pub fn shared_emails(&self) -> Vec<(String, Vec<&PersonId>)> {
        let mut by_email: BTreeMap<String, BTreeSet<&PersonId>> = BTreeMap::new();
        for (id, p) in &self.persons {
            for e in &p.emails {
                by_email
                    .entry(e.to_ascii_lowercase())
                    .or_default()
                    .insert(id);
            }
        }
        by_email
            .into_iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(e, ids)| (e, ids.into_iter().collect()))
            .collect()
    }

    /// The approval `name` gives to `binding`, counting for every group they are registered
    /// in. Refused for an unknown name and for an author of the change (`authors`), before
    /// anything is signed or recorded. Proving that the caller is `name` (the signature with a
    /// registered key) is the evidence adapter's job.
    pub fn approval(
        &self,
        name: &str,
        binding: &Binding,
        authors: &[PersonId],
    ) -> Result<Approval, ApproveError> {
        let (id, person) = self
            .persons
            .get_key_value(&PersonId::new(name))
            .ok_or_else(|| ApproveError::UnknownPerson(name.to_string()))?;
        if authors.contains(id) {
            return Err(ApproveError::SelfApproval(id.clone()));
        }
        Ok(Approval {
            binding: binding.clone(),
            approver: id.clone(),
            groups: person.groups.clone(),
            state: ApprovalState::Given,
        })
    }

    /// Current membership as the binding rules read it: each person holds their groups, their
    /// emails and `@name` (a CODEOWNERS line naming `@alice` means the registered `alice`).
    pub fn membership(&self) -> Membership {
        let mut m = Membership::default();
        for (id, p) in &self.persons {
            m.add(&format!("@{id}"), id);
            for g in &p.groups {
                m.add(g, id);
            }
            for e in &p.emails {
                m.add(e, id);
            }
        }
        m
    }
}

/// An ed25519 public key from `people.NAME.keys`: the raw 32 bytes, read from an OpenSSH line
/// (`ssh-ed25519 AAAA… comment`) or a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo).
/// Approvals are signed with ed25519 only (DESIGN.md §3), so other key types are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// Why a registered key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "key type `{0}` is not supported; approvals are signed with ed25519 (`ssh-ed25519 …` or a PEM ed25519 PUBLIC KEY)"
    )]
    Unsupported(String),
    #[error("the key is not valid base64: {0}")]
    Base64(String),
    #[error("the key's encoded form is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "not a public key: expected `ssh-ed25519 AAAA… comment` or a PEM `-----BEGIN PUBLIC KEY-----` block"
    )]
    Unrecognised,
}

/// The DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (32 bytes) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        use base64::Engine as _;
        let text = text.trim();
        let b64 = base64::engine::general_purpose::STANDARD;
        if text.starts_with("-----BEGIN") {
            let Some(body) = text
                .strip_prefix("-----BEGIN PUBLIC KEY-----")
                .and_then(|rest| rest.trim_end().strip_suffix("-----END PUBLIC KEY-----"))
            else {
                let label = text.lines().next().unwrap_or_default();
                return Err(KeyError::Unsupported(label.trim_matches('-').to_string()));
            };
            let compact: String = body.split_whitespace().collect();
            let der = b64
                .decode(compact)
                .map_err(|e| KeyError::Base64(e.to_string()))?;
            let key = der
                .strip_prefix(&ED25519_SPKI_PREFIX[..])
                .ok_or(KeyError::Unsupported("PEM key that is not ed25519".into()))?;
            let bytes: [u8; 32] = key
                .try_into()
                .map_err(|_| KeyError::Malformed("an ed25519 key is 32 bytes"))?;
            return Ok(PublicKey(bytes));
        }
        let mut fields = text.split_whitespace();
        let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
            return Err(KeyError::Unrecognised);
        };
        if !kind.starts_with("ssh-") && !kind.starts_with("ecdsa-") && !kind.starts_with("sk-") {
            return Err(KeyError::Unrecognised);
        }
        if kind != "ssh-ed25519" {
            return Err(KeyError::Unsupported(kind.to_string()));
        }
        let wire = b64
            .decode(blob)
            .map_err(|e| KeyError::Base64(e.to_string()))?;
        // RFC 4253 wire form: string "ssh-ed25519", string key (each a u32 length + bytes).
        let mut rest = wire.as_slice();
        let mut field = || -> Result<&[u8], KeyError> {
            let len: [u8; 4] = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(KeyError::Malformed("truncated length"))?;
            let len = u32::from_be_bytes(len) as usize;
            let value = rest
                .get(4..4 + len)
                .ok_or(KeyError::Malformed("truncated field"))?;
            rest = &rest[4 + len..];
            Ok(value)
        };
        if field()? != b"ssh-ed25519" {
            return Err(KeyError::Malformed(
                "the key's type inside differs from its label",
            ));
        }
        let bytes: [u8; 32] = field()?
            .try_into()
            .map_err(|_| KeyError::Malformed("an ed25519 key is 32 bytes"))?;
        Ok(PublicKey(bytes))
    }

    /// `SHA256:…` as `ssh-keygen -l` prints it (unpadded base64 of the SHA-256 of the wire
    /// form), so a person can recognise their key in a record.
    pub fn fingerprint(&self) -> String {
        use base64::Engine as _;
        use sha2::{Digest as _, Sha256};
        let mut wire = Vec::with_capacity(51);
        wire.extend_from_slice(&11u32.to_be_bytes());
        wire.extend_from_slice(b"ssh-ed25519");
        wire.extend_from_slice(&32u32.to_be_bytes());
        wire.extend_from_slice(&self.0);
        let digest = Sha256::digest(&wire);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }
}

impl Person {
    /// The registered keys that parse (the loader reports the others with their position).
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.keys
            .iter()
            .filter_map(|k| PublicKey::parse(k).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> People {
        serde_json::from_value(serde_json::json!({
            "alice": { "emails": ["alice@acme.example"], "groups": ["@acme/platform"], "keys": ["ssh-ed25519 AAAAC3 alice"] },
            "Bob": { "emails": ["bob@acme.example", "b.smith@users.noreply.github.com"], "groups": ["@acme/platform", "@acme/security"] },
            "carol": {}
        }))
        .unwrap()
    }

    #[test]
    fn deserializes_the_documented_shape() {
        let people = registry();
        assert_eq!(people.len(), 3);
        let alice = people.get("alice").unwrap();
        assert_eq!(alice.groups, vec!["@acme/platform"]);
        assert_eq!(alice.keys, vec!["ssh-ed25519 AAAAC3 alice"]);
        assert_eq!(people.get("carol"), Some(&Person::default()));
        assert!(people.get("bob").is_some(), "names compare without case");
        assert!(people.get("dave").is_none());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_value::<People>(serde_json::json!({
            "alice": { "email": ["alice@acme.example"] }
        }))
        .unwrap_err();
        assert!(err.to_string().contains("email"), "{err}");
    }

    #[test]
    fn finds_the_author_of_an_email() {
        let people = registry();
        assert_eq!(
            people.author("alice@acme.example"),
            AuthorLookup::Person(&PersonId::new("alice"))
        );
        assert_eq!(
            people.author(" B.Smith@users.noreply.github.com"),
            AuthorLookup::Person(&PersonId::new("bob"))
        );
        assert_eq!(people.author("mallory@evil.example"), AuthorLookup::Unknown);
        assert!(
            people
                .author("mallory@evil.example")
                .candidates()
                .is_empty()
        );
        assert!(people.shared_emails().is_empty());
    }

    #[test]
    fn a_shared_email_makes_everyone_listing_it_an_author() {
        let mut people = registry();
        people
            .persons
            .get_mut(&PersonId::new("carol"))
            .unwrap()
            .emails
            .push("ALICE@acme.example".into());
        let lookup = people.author("alice@acme.example");
        assert_eq!(
            lookup.candidates(),
            vec![&PersonId::new("alice"), &PersonId::new("carol")]
        );
        assert_eq!(
            people.shared_emails(),
            vec![(
                "alice@acme.example".to_string(),
                vec![&PersonId::new("alice"), &PersonId::new("carol")]
            )]
        );
    }

    #[test]
    fn approvals_are_recorded_for_registered_non_authors_only() {
        let people = registry();
        let binding = Binding {
            repo: "infra-live".into(),
            pr: Some(1),
            commit: "c0ffee".into(),
            env: "prod".into(),
            unit: "prod/network".into(),
            subject: crate::binding::Subject::Plan("sha256:p".into()),
            decision_digest: "sha256:d".into(),
        };
        let author = match people.author("bob@acme.example") {
            AuthorLookup::Person(p) => p.clone(),
            other => panic!("{other:?}"),
        };
        let authors = [author];
        let a = people.approval("Alice", &binding, &authors).unwrap();
        assert_eq!(a.approver, PersonId::new("alice"));
        assert_eq!(a.groups, vec!["@acme/platform"]);
        assert_eq!(a.binding, binding);
        assert_eq!(a.state, ApprovalState::Given);
        assert_eq!(
            people.approval("bob", &binding, &authors),
            Err(ApproveError::SelfApproval(PersonId::new("bob")))
        );
        let err = people.approval("mallory", &binding, &authors).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`mallory` is not registered under `people:` in sluice.yaml"
        );
    }

    #[test]
    fn membership_covers_groups_emails_and_names() {
        let m = registry().membership();
        let bob = PersonId::new("bob");
        assert!(m.holds(&bob, "@acme/security"));
        assert!(m.holds(&bob, "@ACME/Platform"));
        assert!(m.holds(&bob, "@bob"));
        assert!(m.holds(&bob, "bob@acme.example"));
        assert!(!m.holds(&PersonId::new("alice"), "@acme/security"));
        assert!(!m.holds(&PersonId::new("carol"), "@alice"));
    }

    // `ssh-keygen -t ed25519` output and the same key as PEM (`openssl pkey -pubout`).
    const SSH: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGAC9l5AZD1Ncw7DBIF7yS7SrIB6XobaC4qN8k3a8cHt alice@laptop";

    #[test]
    fn reads_openssh_and_pem_ed25519_keys() {
        let key = PublicKey::parse(SSH).unwrap();
        use base64::Engine as _;
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&key.0);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert_eq!(PublicKey::parse(&pem).unwrap(), key);
        assert!(key.fingerprint().starts_with("SHA256:"));
        assert_eq!(key.fingerprint().len(), 7 + 43);
    }

    #[test]
    fn refuses_what_is_not_an_ed25519_public_key() {
        assert!(matches!(
            PublicKey::parse("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ bob"),
            Err(KeyError::Unsupported(k)) if k == "ssh-rsa"
        ));
        assert_eq!(PublicKey::parse("hello"), Err(KeyError::Unrecognised));
        assert!(matches!(
            PublicKey::parse("ssh-ed25519 !!!notbase64"),
            Err(KeyError::Base64(_))
        ));
        // Valid base64 whose wire form says another key type.
        assert!(matches!(
            PublicKey::parse("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ=="),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            PublicKey::parse("-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----"),
            Err(KeyError::Unsupported(_))
        ));
    }
}
