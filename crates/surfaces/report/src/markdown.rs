//! Markdown building blocks shared by every report: escaping, collapsing long sections, and
//! fitting a report into GitHub comments (one comment, or several parts) without leaving a code
//! fence or `<details>` open; and plain text for terminals.

use std::fmt::Write as _;

/// GitHub's limit on one issue or PR comment, in characters.
pub const COMMENT_LIMIT: usize = 65_536;

/// `1 file`, `2 files`.
pub fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// Sections longer than this many lines are collapsed in `<details>`.
pub const COLLAPSE_LINES: usize = 25;

/// Text safe to place in Markdown prose: no HTML, no line breaks.
pub fn md_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

/// An inline code span that survives backticks inside `s`.
pub fn md_code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

/// Wrap `body` in `<details>` when it has more than [`COLLAPSE_LINES`] lines (or always, with
/// `force`).
pub fn collapse(summary: &str, body: &str, force: bool) -> String {
    if force || body.lines().count() > COLLAPSE_LINES {
        format!("<details><summary>{summary}</summary>\n\n{body}\n</details>\n\n")
    } else {
        format!("{body}\n")
    }
}

/// A policy result's documentation link as an absolute URL: a relative one (`docs/policy.md#rule`,
/// as the built-in pack names its pages) joins under `docs_url` (`policy.docs_url`, ending in
/// `/`), so that the link works in a PR comment and in code scanning, which resolve nothing
/// against the repository; absolute ones are kept.
pub fn docs_link(docs_url: &str, docs: &str) -> String {
    if docs.contains("://") {
        docs.to_string()
    } else {
        format!("{docs_url}{}", docs.trim_start_matches("./"))
    }
}

/// Room kept at the end of a fitted comment for the note on what was left out.
const FIT_NOTE_ROOM: usize = 2_048;

/// The blocks in order while they fit in `limit` bytes; a block that does not fit is cut at a
/// line boundary (fences and `<details>` closed) when there is room for a useful part, left out
/// otherwise; a closing note counts what was cut or left out and names `--parts-dir`.
pub fn fit_one_comment(blocks: &[String], limit: usize) -> String {
    let total: usize = blocks.iter().map(String::len).sum();
    if total <= limit {
        return blocks.concat();
    }
    let room = limit.saturating_sub(FIT_NOTE_ROOM);
    let mut out = String::new();
    let (mut cut, mut omitted): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for b in blocks {
        let left = room.saturating_sub(out.len());
        if b.len() <= left {
            out.push_str(b);
        } else if left >= 4_096 {
            let piece = split_block(b, left - 256)
                .into_iter()
                .next()
                .unwrap_or_default();
            out.push_str(&piece);
            out.push_str("\n*… cut here to fit one comment.*\n\n");
            cut.push(heading(b));
        } else {
            omitted.push(heading(b));
        }
    }
    let mut note = format!(
        "---\n*This report is longer than one GitHub comment ({total} characters): {} cut, {} left out. `sluice pr --parts-dir DIR` writes the whole report as several comments.*",
        plural(cut.len(), "section"),
        plural(omitted.len(), "section")
    );
    for h in omitted {
        if note.len() + h.len() + 8 > FIT_NOTE_ROOM - 64 {
            note.push_str("\n- …");
            break;
        }
        let _ = write!(note, "\n- {h}");
    }
    out.push_str(&note);
    out.push('\n');
    out
}

/// A block's first heading (or first line), for the note on what was left out.
fn heading(block: &str) -> &str {
    let line = block
        .lines()
        .find(|l| l.starts_with('#'))
        .or_else(|| block.lines().next())
        .unwrap_or("");
    let line = line.trim_start_matches('#').trim();
    &line[..line.floor_char_boundary(120)]
}

/// Markdown to plain text: headings, emphasis, code spans, links, tables, `<details>` and
/// fences become their text.
pub fn plain_text(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with("```") || t == "</details>" || t == "---" {
            continue;
        }
        if t.starts_with("|") && t.trim_matches(|c| c == '|' || c == '-').is_empty() {
            continue;
        }
        let mut l = line.to_string();
        if let Some(rest) = t.strip_prefix("<details><summary>") {
            l = format!("{}:", rest.trim_end_matches("</summary>"));
        }
        if t.starts_with('#') {
            let title = t.trim_start_matches('#').trim();
            l = format!("{title}\n{}", "=".repeat(title.chars().count().min(80)));
        }
        if t.starts_with('|') {
            l = t
                .trim_matches('|')
                .split(" | ")
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("  ")
                .replace("\\|", "|");
        }
        if let Some(rest) = l.strip_prefix("> ") {
            l = rest.to_string();
        }
        l = l
            .replace("**", "")
            .replace('`', "")
            .replace(":no_entry: ", "BLOCKED: ")
            .replace("<details><summary>(continued)</summary>", "");
        out.push_str(&strip_links(&l));
        out.push('\n');
    }
    out
}

/// `[text](url)` → `text (url)`.
fn strip_links(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        out.push_str(&rest[..open]);
        let _ = write!(
            out,
            "{} ({})",
            &rest[open + 1..close],
            &rest[close + 2..end]
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Room kept in every part for its `Part i of n` line.
const PART_HEADER_ROOM: usize = 64;

/// Pack blocks into parts of at most `limit` bytes (bytes bound characters from above), in
/// order, cutting only between blocks. A block larger than a part is cut at line boundaries,
/// closing and reopening the code fence or `<details>` it is inside. With more than one part,
/// each starts with `*Part i of n*`.
pub fn split_parts(blocks: &[String], limit: usize) -> Vec<String> {
    let room = limit.saturating_sub(PART_HEADER_ROOM).max(256);
    let mut pieces: Vec<String> = Vec::new();
    for b in blocks {
        if b.len() <= room {
            pieces.push(b.clone());
        } else {
            pieces.extend(split_block(b, room));
        }
    }
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    for p in pieces {
        if !current.is_empty() && current.len() + p.len() > room {
            parts.push(std::mem::take(&mut current));
        }
        current.push_str(&p);
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    let n = parts.len();
    if n > 1 {
        for (i, p) in parts.iter_mut().enumerate() {
            *p = format!("*Part {} of {n}*\n\n{p}", i + 1);
        }
    }
    parts
}

/// Cut one oversized block at line boundaries into pieces of at most `room` bytes.
fn split_block(block: &str, room: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    // The open fence line (```diff) and whether a <details> is open, to close and reopen.
    let mut fence: Option<String> = None;
    let mut details = false;
    let closing = |fence: &Option<String>, details: bool| {
        let mut c = String::new();
        if fence.is_some() {
            c.push_str("```\n");
        }
        if details {
            c.push_str("</details>\n\n");
        }
        c
    };
    let reopening = |fence: &Option<String>, details: bool| {
        let mut c = String::new();
        if details {
            c.push_str("<details><summary>(continued)</summary>\n\n");
        }
        if let Some(f) = fence {
            c.push_str(f);
            c.push('\n');
        }
        c
    };
    for line in block.split_inclusive('\n') {
        let mut line = line.to_string();
        // A single line longer than a part (never produced by sluice's renderers) is cut.
        let max_line = room / 2;
        if line.len() > max_line {
            let mut end = max_line;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push_str(" …\n");
        }
        let tail = closing(&fence, details);
        if current.len() + line.len() + tail.len() > room && !current.is_empty() {
            current.push_str(&tail);
            out.push(std::mem::take(&mut current));
            current = reopening(&fence, details);
        }
        let trimmed = line.trim_end();
        if trimmed.starts_with("```") {
            fence = if fence.is_some() {
                None
            } else {
                Some(trimmed.to_string())
            };
        } else if fence.is_none() {
            if trimmed.starts_with("<details>") {
                details = true;
            }
            if trimmed.ends_with("</details>") {
                details = false;
            }
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn balanced(part: &str) -> bool {
        part.matches("```").count().is_multiple_of(2)
            && part.matches("<details>").count() == part.matches("</details>").count()
    }

    #[test]
    fn huge_blocks_are_cut_with_fences_and_details_closed() {
        let mut body = String::from("```diff\n");
        for i in 0..20_000 {
            let _ = writeln!(body, "+ aws_s3_bucket.bucket_number_{i}");
        }
        body.push_str("```\n");
        let block = collapse("20000 address lines", &body, false);
        let blocks = vec!["## head\n\n".to_string(), block, "### tail\n\n".into()];
        let parts = split_parts(&blocks, COMMENT_LIMIT);
        assert!(parts.len() > 5, "{}", parts.len());
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= COMMENT_LIMIT, "part {i} is {} bytes", p.len());
            assert!(balanced(p), "part {i} leaves a fence or details open");
            assert!(p.starts_with(&format!("*Part {} of {}*", i + 1, parts.len())));
        }
        let all = parts.concat();
        for i in [0, 9_999, 19_999] {
            assert!(all.contains(&format!("+ aws_s3_bucket.bucket_number_{i}\n")));
        }
        assert!(parts[0].contains("## head"));
        assert!(parts.last().unwrap().contains("### tail"));
    }

    #[test]
    fn a_large_report_fits_one_comment_and_says_what_it_left_out() {
        let mut blocks = vec!["## sluice: acme — DENIED\n\n".to_string()];
        for i in 0..400 {
            blocks.push(format!("### App `a{i}`\n\n{}\n", "x ".repeat(200)));
        }
        let mut body = String::from("```diff\n");
        for i in 0..10_000 {
            let _ = writeln!(body, "+ line {i}");
        }
        body.push_str("```\n");
        blocks.push(collapse("big diff", &body, false));
        let md = fit_one_comment(&blocks, COMMENT_LIMIT);
        assert!(md.len() <= COMMENT_LIMIT, "{}", md.len());
        assert!(md.starts_with("## sluice: acme — DENIED"));
        assert!(balanced(&md));
        assert!(md.contains("--parts-dir"), "{}", &md[md.len() - 500..]);
        // Small reports are unchanged.
        let small = vec!["## a\n".to_string(), "b\n".to_string()];
        assert_eq!(fit_one_comment(&small, COMMENT_LIMIT), "## a\nb\n");
    }

    #[test]
    fn text_is_plain() {
        let md = "## sluice: acme — **DENIED**\n\n| a | b |\n|---|---|\n| `x` | [rule](https://d/r) |\n\n<details><summary>more</summary>\n\n```diff\n+ y\n```\n\n</details>\n";
        let t = plain_text(md);
        for markup in ["**", "`", "|", "<details>", "```", "]("] {
            assert!(!t.contains(markup), "{markup} in {t}");
        }
        assert!(t.contains("sluice: acme — DENIED"));
        assert!(t.contains("x  rule (https://d/r)"), "{t}");
        assert!(t.contains("more:"));
        assert!(t.contains("+ y"));
    }

    proptest! {
        /// Blocks are never reordered, dropped or cut when they fit; every part fits.
        #[test]
        fn packing_keeps_order_and_limit(sizes in proptest::collection::vec(1usize..3000, 0..40)) {
            let blocks: Vec<String> = sizes.iter().enumerate().map(|(i, n)| format!("<!-- {i} -->{}\n", "x".repeat(*n))).collect();
            let limit = 8_000;
            let parts = split_parts(&blocks, limit);
            prop_assert!(parts.iter().all(|p| p.len() <= limit));
            let all = parts.concat();
            let mut at = 0;
            for b in &blocks {
                let found = all[at..].find(b.as_str());
                prop_assert!(found.is_some());
                at += found.unwrap() + b.len();
            }
            if blocks.iter().map(String::len).sum::<usize>() <= limit - PART_HEADER_ROOM {
                prop_assert_eq!(parts.len(), 1);
            }
        }
    }
}
