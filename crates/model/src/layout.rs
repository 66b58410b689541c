//! Discovery layouts such as `{env}/{region}/{stack}`: which directories under a root are
//! stacks (or apps), and what their id, environment and region are.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Placeholder(String),
}

/// A parsed layout. Each segment is a literal directory name or a `{name}` placeholder that
/// matches exactly one directory name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("layout is empty")]
    Empty,
    #[error(
        "segment `{0}` mixes a placeholder with other text; use a whole segment such as `{{env}}`"
    )]
    PartialSegment(String),
    #[error("placeholder `{{{0}}}` appears twice")]
    Repeated(String),
    #[error("layout has no placeholder, so every match would get the same id")]
    NoPlaceholder,
}

/// What a layout captured for one directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Captures {
    /// Placeholder values joined with `/` in layout order: the stack or app id.
    pub id: String,
    pub values: BTreeMap<String, String>,
}

impl Layout {
    pub fn parse(text: &str) -> Result<Self, LayoutError> {
        let mut segments = Vec::new();
        for seg in text.trim_matches('/').split('/').filter(|s| !s.is_empty()) {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(LayoutError::PartialSegment(seg.into()));
                }
                if segments.contains(&Segment::Placeholder(name.into())) {
                    return Err(LayoutError::Repeated(name.into()));
                }
                segments.push(Segment::Placeholder(name.into()));
            } else if seg.contains(['{', '}']) {
                return Err(LayoutError::PartialSegment(seg.into()));
            } else {
                segments.push(Segment::Literal(seg.into()));
            }
        }
        if segments.is_empty() {
            return Err(LayoutError::Empty);
        }
        if !segments
            .iter()
            .any(|s| matches!(s, Segment::Placeholder(_)))
        {
            return Err(LayoutError::NoPlaceholder);
        }
        Ok(Layout { segments })
    }

    /// Number of directory levels below the root that a match has.
    pub fn depth(&self) -> usize {
        self.segments.len()
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder(p) => Some(p.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Match a directory path relative to the discovery root.
    pub fn capture(&self, rel_dir: &str) -> Option<Captures> {
        let parts: Vec<&str> = rel_dir.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut caps = Captures::default();
        let mut ids = Vec::new();
        for (seg, part) in self.segments.iter().zip(parts) {
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Placeholder(name) => {
                    ids.push(part);
                    caps.values.insert(name.clone(), part.to_string());
                }
            }
        }
        caps.id = ids.join("/");
        Some(caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_id_env_region() {
        let l = Layout::parse("{env}/{region}/{stack}").unwrap();
        let c = l.capture("prod/ap-southeast-1/network").unwrap();
        assert_eq!(c.id, "prod/ap-southeast-1/network");
        assert_eq!(c.values["env"], "prod");
        assert!(l.capture("prod/ap-southeast-1").is_none());
        assert!(l.capture("prod/ap-southeast-1/network/modules").is_none());
    }

    #[test]
    fn literals_must_match() {
        let l = Layout::parse("{cluster}/apps/{app}").unwrap();
        assert_eq!(
            l.capture("prod-eu/apps/payments").unwrap().id,
            "prod-eu/payments"
        );
        assert!(l.capture("prod-eu/infra/payments").is_none());
    }

    #[test]
    fn rejects_bad_layouts() {
        assert_eq!(Layout::parse(""), Err(LayoutError::Empty));
        assert!(matches!(
            Layout::parse("env-{env}"),
            Err(LayoutError::PartialSegment(_))
        ));
        assert!(matches!(
            Layout::parse("{a}/{a}"),
            Err(LayoutError::Repeated(_))
        ));
        assert_eq!(Layout::parse("a/b"), Err(LayoutError::NoPlaceholder));
    }
}
