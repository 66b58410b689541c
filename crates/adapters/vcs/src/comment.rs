//! The one PR comment sluice keeps up to date: its hidden marker, how a long report is split into
//! parts that each fit GitHub's comment limit, and which API calls bring the PR's comments from
//! what they are to what they should be.
//!
//! All pure. The client lists the PR's comments, keeps the ones sluice wrote that carry the
//! marker, and carries out [`plan_sync`]'s operations in order.

use std::fmt;

/// GitHub refuses an issue comment body over 65,536 characters.
pub const MAX_COMMENT_CHARS: usize = 65_536;

/// Room kept in each part for the marker line (at most 76 characters).
const HEADER_RESERVE: usize = 100;

/// Room kept in a part cut here for a reopened code fence (at most 41 characters) and a
/// closing one (5).
const FENCE_RESERVE: usize = 50;

/// The most characters a part handed to [`CommentMarker::render`] may have to be posted as it
/// is; a longer one is cut further.
pub const PART_LIMIT: usize = MAX_COMMENT_CHARS - HEADER_RESERVE;

/// Longest fence line repeated when a code block continues into the next part.
const MAX_FENCE_LINE: usize = 40;

/// Names one family of comments on a PR (`pr-report`); written into each part as an HTML comment,
/// which GitHub does not render.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommentMarker(String);

impl CommentMarker {
    /// `key`: 1 to 32 lower-case letters, digits and `-`.
    pub fn new(key: &str) -> Option<Self> {
        let ok = !key.is_empty()
            && key.len() <= 32
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| CommentMarker(key.to_owned()))
    }

    fn prefix(&self) -> String {
        format!("<!-- sluice:{} part ", self.0)
    }

    /// Whether `body` is one of this family's parts (its first line is the marker).
    pub fn marks(&self, body: &str) -> bool {
        let first = body.lines().next().unwrap_or("");
        first
            .strip_prefix(&self.prefix())
            .and_then(|rest| rest.strip_suffix(" -->"))
            .and_then(|n| n.split_once('/'))
            .is_some_and(|(part, total)| {
                part.parse::<usize>().is_ok() && total.parse::<usize>().is_ok()
            })
    }

    /// The comment bodies to post for a report already split into `parts` (the PR report splits
    /// between its sections; each should fit in [`PART_LIMIT`]), each with its marker and within
    /// [`MAX_COMMENT_CHARS`]. A part too long for one comment is cut further here.
    pub fn render(&self, parts: &[impl AsRef<str>]) -> Vec<String> {
        self.render_within(parts, MAX_COMMENT_CHARS)
    }

    fn render_within(&self, parts: &[impl AsRef<str>], max_chars: usize) -> Vec<String> {
        let mut bodies: Vec<String> = parts
            .iter()
            .flat_map(|p| fit(p.as_ref(), max_chars - HEADER_RESERVE))
            .collect();
        if bodies.is_empty() {
            bodies.push(String::new());
        }
        let total = bodies.len();
        let prefix = self.prefix();
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| format!("{prefix}{}/{total} -->\n{body}", i + 1))
            .collect()
    }
}

impl fmt::Display for CommentMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `text` in pieces of at most `max_chars` characters: itself when it fits, else cut at line
/// ends where possible. A piece that ends inside a fenced code block closes the fence and the
/// next piece reopens it, so every piece renders on its own.
fn fit(text: &str, max_chars: usize) -> Vec<String> {
    if text.chars().count() <= max_chars {
        return vec![text.to_owned()];
    }
    let pieces = cut(text, max_chars - FENCE_RESERVE);
    let fences = Fences::scan(text);
    let last = pieces.len() - 1;
    let mut offset = 0;
    let mut out = Vec::with_capacity(pieces.len());
    for (i, piece) in pieces.into_iter().enumerate() {
        let end = offset + piece.len();
        let mut body = String::with_capacity(piece.len() + FENCE_RESERVE);
        if let Some(fence) = fences.open_at(offset) {
            body.push_str(fence);
            body.push('\n');
        }
        body.push_str(piece);
        if i < last && fences.open_at(end).is_some() {
            if !body.ends_with('\n') {
                body.push('\n');
            }
            body.push_str("```\n");
        }
        out.push(body);
        offset = end;
    }
    out
}

/// Slice `text` into pieces of at most `max_chars` characters that concatenate back to it. A
/// piece ends at a line end unless one line alone is too long, which is then cut at a character
/// boundary. An empty text is one empty piece (the comment still exists).
fn cut(text: &str, max_chars: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut end, mut chars) = (0, 0, 0);
    for line in text.split_inclusive('\n') {
        let mut line_start = end;
        let mut n = line.chars().count();
        if chars + n > max_chars && chars > 0 {
            pieces.push(&text[start..end]);
            (start, chars) = (end, 0);
        }
        while n > max_chars {
            let rest = &text[line_start..end + line.len()];
            let at = rest
                .char_indices()
                .nth(max_chars)
                .map_or(rest.len(), |(i, _)| i);
            pieces.push(&rest[..at]);
            line_start += at;
            n -= max_chars;
            start = line_start;
        }
        end += line.len();
        chars += n;
    }
    if start < text.len() || pieces.is_empty() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Where fenced code blocks (```` ``` ````) open and close, by byte offset of each fence line.
struct Fences<'a> {
    /// (offset of the fence line, the line when it opens a block, `None` when it closes one)
    toggles: Vec<(usize, Option<&'a str>)>,
}

impl<'a> Fences<'a> {
    fn scan(text: &'a str) -> Self {
        let mut toggles = Vec::new();
        let mut open = false;
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim();
            if trimmed.starts_with("```") {
                let opener = if trimmed.chars().count() <= MAX_FENCE_LINE {
                    trimmed
                } else {
                    "```"
                };
                toggles.push((offset, (!open).then_some(opener)));
                open = !open;
            }
            offset += line.len();
        }
        Fences { toggles }
    }

    /// The fence line of the block open just before byte `offset`, if one is.
    fn open_at(&self, offset: usize) -> Option<&'a str> {
        let i = self.toggles.partition_point(|(at, _)| *at < offset);
        i.checked_sub(1).and_then(|i| self.toggles[i].1)
    }
}

/// A comment on the PR that carries the marker and was written by sluice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingComment {
    pub id: u64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentOp {
    Update { id: u64, body: String },
    Create { body: String },
    Delete { id: u64 },
}

/// The calls that turn `existing` into `desired`: the oldest comments take the first parts
/// (GitHub shows comments in creation order, so the parts stay in order), a part whose text is
/// unchanged is left alone, missing parts are created and left-over ones deleted.
pub fn plan_sync(mut existing: Vec<ExistingComment>, desired: Vec<String>) -> Vec<CommentOp> {
    existing.sort_by_key(|c| c.id);
    let mut ops = Vec::new();
    let mut old = existing.into_iter();
    for body in desired {
        match old.next() {
            Some(c) if c.body == body => {}
            Some(c) => ops.push(CommentOp::Update { id: c.id, body }),
            None => ops.push(CommentOp::Create { body }),
        }
    }
    ops.extend(old.map(|c| CommentOp::Delete { id: c.id }));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn marker() -> CommentMarker {
        CommentMarker::new("pr-report").unwrap()
    }

    #[test]
    fn a_short_report_is_one_marked_part() {
        let parts = marker().render(&["## sluice\nall good\n"]);
        assert_eq!(
            parts,
            vec!["<!-- sluice:pr-report part 1/1 -->\n## sluice\nall good\n"]
        );
        assert!(marker().marks(&parts[0]));
        assert!(!CommentMarker::new("other").unwrap().marks(&parts[0]));
        assert!(!marker().marks("## sluice\n<!-- sluice:pr-report part 1/1 -->"));
        assert!(!marker().marks("<!-- sluice:pr-report part x/1 -->"));
        assert_eq!(
            marker().render(&[""]),
            vec!["<!-- sluice:pr-report part 1/1 -->\n"]
        );
        let none: [&str; 0] = [];
        assert_eq!(
            marker().render(&none),
            vec!["<!-- sluice:pr-report part 1/1 -->\n"]
        );
        assert_eq!(
            marker().render(&["a", "b"]),
            vec![
                "<!-- sluice:pr-report part 1/2 -->\na",
                "<!-- sluice:pr-report part 2/2 -->\nb"
            ]
        );
    }

    #[test]
    fn a_long_report_splits_at_lines_and_keeps_fences_balanced() {
        let mut body = String::from("# Plan\n```diff\n");
        for i in 0..20_000 {
            body.push_str(&format!("+ resource.r{i} will be created\n"));
        }
        body.push_str("```\ndone\n");
        let parts = marker().render(&[&body]);
        assert!(parts.len() >= 2, "{}", parts.len());
        let n = parts.len();
        for (i, part) in parts.iter().enumerate() {
            assert!(part.chars().count() <= MAX_COMMENT_CHARS);
            assert!(part.starts_with(&format!("<!-- sluice:pr-report part {}/{n} -->\n", i + 1)));
            assert_eq!(
                part.matches("```").count() % 2,
                0,
                "part {i} has an open fence"
            );
            for line in part.lines().skip(1) {
                let known = line.starts_with("+ resource.r") && line.ends_with(" will be created");
                assert!(
                    known || ["```", "```diff", "# Plan", "done"].contains(&line),
                    "{line}"
                );
            }
        }
        assert_eq!(parts[1].lines().nth(1), Some("```diff"));
    }

    #[test]
    fn a_line_longer_than_a_part_is_cut_at_a_char_boundary() {
        let body = "é".repeat(MAX_COMMENT_CHARS * 2);
        let parts = marker().render(&[&body]);
        assert_eq!(parts.len(), 3);
        let text: String = parts
            .iter()
            .map(|p| p.split_once('\n').unwrap().1)
            .collect();
        assert_eq!(text, body);
    }

    #[test]
    fn sync_reuses_oldest_comments_and_skips_unchanged_parts() {
        let c = |id, body: &str| ExistingComment {
            id,
            body: body.into(),
        };
        let ops = plan_sync(
            vec![c(9, "b"), c(3, "a"), c(12, "z")],
            vec!["a".into(), "B".into()],
        );
        assert_eq!(
            ops,
            vec![
                CommentOp::Update {
                    id: 9,
                    body: "B".into()
                },
                CommentOp::Delete { id: 12 }
            ]
        );
        assert_eq!(
            plan_sync(vec![], vec!["x".into()]),
            vec![CommentOp::Create { body: "x".into() }]
        );
    }

    proptest! {
        #[test]
        fn pieces_fit_and_concatenate_back(
            lines in proptest::collection::vec("[^\n]{0,300}", 0..300),
            max in 1usize..500,
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let pieces = cut(&text, max);
            prop_assert_eq!(pieces.concat(), text.clone());
            for (i, piece) in pieces.iter().enumerate() {
                let n = piece.chars().count();
                prop_assert!(n <= max);
                // Only a line that alone exceeds the limit is cut elsewhere than at its end.
                if i + 1 < pieces.len() && !piece.ends_with('\n') {
                    prop_assert!(lines.iter().any(|l| l.chars().count() + 1 > max));
                }
            }
        }

        #[test]
        fn rendered_parts_fit_and_each_balances_its_fences(
            lines in proptest::collection::vec("(```[a-z]{0,5}|[^\n`]{0,80})", 0..400),
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let max = 1000;
            let parts = marker().render_within(&[&text], max);
            let fences_in_text = lines.iter().filter(|l| l.starts_with("```")).count();
            let mut restored = String::new();
            for (i, part) in parts.iter().enumerate() {
                prop_assert!(part.chars().count() <= max);
                prop_assert!(marker().marks(part));
                let fences = part.lines().filter(|l| l.starts_with("```")).count();
                if i + 1 < parts.len() || fences_in_text % 2 == 0 {
                    prop_assert_eq!(fences % 2, 0, "part {} leaves a fence open", i);
                }
                restored.push_str(part.split_once('\n').unwrap().1);
            }
            // Apart from the fence fix-ups, the parts are the text.
            let strip = |s: &str| s.lines().filter(|l| !l.starts_with("```")).collect::<Vec<_>>().join("\n");
            prop_assert_eq!(strip(&restored), strip(&text));
        }

        #[test]
        fn sync_ends_with_exactly_the_desired_parts(
            old in proptest::collection::btree_map(0u64..1000, "[ab]{0,2}", 0..6),
            desired in proptest::collection::vec("[ab]{0,2}", 0..6),
        ) {
            let existing: Vec<_> = old.iter().map(|(id, b)| ExistingComment { id: *id, body: b.clone() }).collect();
            let ops = plan_sync(existing, desired.clone());
            let mut state: std::collections::BTreeMap<u64, String> = old.clone();
            let mut next_id = 1000;
            for op in ops {
                match op {
                    CommentOp::Update { id, body } => {
                        prop_assert_ne!(state.get(&id), Some(&body), "needless update");
                        state.insert(id, body);
                    }
                    CommentOp::Create { body } => { state.insert(next_id, body); next_id += 1; }
                    CommentOp::Delete { id } => { state.remove(&id); }
                }
            }
            prop_assert_eq!(state.into_values().collect::<Vec<_>>(), desired);
        }
    }
}
