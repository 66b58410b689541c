//! From documents to the rendered set: learn CRDs (scope and schema of custom kinds), normalise
//! every document, refuse duplicate identities, order the objects and digest them. Pure: the
//! same documents give the same objects and digest, whatever produced them.

use sluice_model::finding::Severity;

use crate::diagnostic::Diagnostic;
use crate::error::RenderError;
use crate::manifest::Document;
use crate::normalize::{self, Note};
use crate::object::{Object, group_of};
use crate::schema::SchemaSet;

/// Objects in render order with their digest.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub objects: Vec<Object>,
    pub digest: String,
    /// What normalisation changed that an author may not expect, and unreadable CRDs.
    pub notes: Vec<Diagnostic>,
}

pub fn is_crd(doc: &serde_json::Value) -> bool {
    doc["kind"] == "CustomResourceDefinition"
        && group_of(doc["apiVersion"].as_str().unwrap_or_default()) == "apiextensions.k8s.io"
}

/// Assemble documents into the rendered set. CRDs among them are added to `schemas` first, so
/// that their custom resources get the right scope and schema.
pub fn assemble(
    docs: Vec<Document>,
    namespace: Option<&str>,
    schemas: &mut SchemaSet,
) -> Result<Assembled, RenderError> {
    let mut notes = Vec::new();
    for d in docs.iter().filter(|d| is_crd(&d.value)) {
        notes.extend(schemas.add_crd(&d.value, &d.source));
    }
    let mut raw_notes: Vec<Note> = Vec::new();
    let mut objects = Vec::with_capacity(docs.len());
    let mut note_sources = Vec::new();
    for d in docs {
        let before = raw_notes.len();
        let source = d.source.clone();
        objects.push(normalize::normalise(
            d,
            namespace,
            schemas.scopes(),
            &mut raw_notes,
        ));
        note_sources.extend(std::iter::repeat_n(source, raw_notes.len() - before));
    }
    for (n, source) in raw_notes.iter().zip(note_sources) {
        notes.push(Diagnostic::new(
            Severity::Info,
            "render/normalised",
            &source,
            Some(&n.identity),
            n.message.clone(),
        ));
    }
    normalize::check_duplicates(&objects)?;
    normalize::sort_objects(&mut objects);
    let digest = normalize::digest(&objects);
    Ok(Assembled {
        objects,
        digest,
        notes,
    })
}
