//! The audit: recompute the Merkle tree from every stored leaf, in index order, and hold every
//! stored node and every stored checkpoint against it.
//!
//! What it catches: a changed leaf (its entry no longer hashes to its leaf hash, or the leaves
//! under a stored node no longer hash to it), a changed node, swapped leaves (reported as
//! reordering when a swap explains the mismatch), missing leaves (gaps; a truncated tail), a
//! checkpoint larger than the log (truncation), a checkpoint whose root the leaves do not
//! reproduce, and a checkpoint note that states another size or root than its row.
//!
//! The log alone cannot tell when its newest leaves were removed together with the head and
//! the checkpoints that covered them: what is left is a whole, smaller log. So the audit also
//! holds the records that point into the log against it: every event naming a leaf
//! (`leaf_index`, with the `envelope` digest that leaf must hold) and every stage result signed
//! by an envelope must find that envelope in the log.
//!
//! [`Auditor`] is the pure part: it is fed leaves with the nodes stored for them and keeps only
//! the right edge of the tree (O(log n) memory), so a log of any size streams through it.
//! [`audit`] drives it from a store.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use sluice_evidence::merkle::{EMPTY_ROOT, Hash, leaf_hash, node_hash};
use tokio::sync::mpsc;

use crate::error::{Result, StoreError};
use crate::log::parse_checkpoint_note;
use crate::records::{CheckpointRecord, Digest, EventRecord, LogLeaf, LogNode};
use crate::state::StateStore;
use crate::store::Store;

/// How many problems a report lists in full; the rest are counted.
const MAX_LISTED: usize = 1000;
/// Level-1 mismatches kept for the reordering analysis (pairwise, so bounded).
const MAX_REORDER_CANDIDATES: usize = 64;

/// One thing the audit found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditProblem {
    /// The leaf's entry does not hash to the leaf hash stored with it.
    LeafChanged {
        index: u64,
    },
    /// Two leaves hold each other's entries.
    Reordered {
        first: u64,
        second: u64,
    },
    /// Leaves `[from, to)` are missing.
    Gap {
        from: u64,
        to: u64,
    },
    /// A leaf is stored at or beyond the log head (the head was moved back).
    LeafBeyondHead {
        index: u64,
        head: u64,
    },
    /// The leaves under a stored node do not hash to it: the node or a leaf below it changed.
    NodeMismatch {
        level: u8,
        index: u64,
        first_leaf: u64,
        last_leaf: u64,
    },
    MissingNode {
        level: u8,
        index: u64,
    },
    /// A node row that no tree of this log has (wrong level or position).
    UnexpectedNode {
        level: u8,
        index: u64,
    },
    /// A row that cannot be read as a leaf or node (wrong length, inconsistent key).
    UnreadableRow {
        detail: String,
    },
    /// The leaves do not reproduce a checkpoint's root.
    CheckpointMismatch {
        size: u64,
        stored_root: String,
        computed_root: String,
    },
    /// A checkpoint covers more leaves than the log holds.
    Truncated {
        checkpoint_size: u64,
        log_size: u64,
    },
    /// The checkpoint could not be recomputed (a gap below its size).
    CheckpointUnverifiable {
        size: u64,
        reason: String,
    },
    /// The signed note states something else than the checkpoint row, or does not parse.
    CheckpointNote {
        size: u64,
        detail: String,
    },
    /// The checkpoint's signature did not verify with the key the audit was given.
    CheckpointSignature {
        size: u64,
        detail: String,
    },
    /// An event names a leaf the log does not hold (leaves, head and checkpoints were removed).
    EventLeafMissing {
        event: i64,
        change_id: String,
        leaf_index: u64,
        log_size: u64,
    },
    /// An event names a leaf that holds another entry than the envelope it names.
    EventLeafMismatch {
        event: i64,
        change_id: String,
        leaf_index: u64,
    },
    /// A stage result is signed by an envelope the log does not hold.
    StageResultUnlogged {
        change_id: String,
        stage: String,
        envelope: String,
    },
    /// A state backend event names a leaf beyond the log's end.
    StateEventLeafMissing {
        event: i64,
        unit: String,
        leaf_index: u64,
        log_size: u64,
    },
    /// A state backend event's signed envelope (changed, or gone) is not what its leaf holds.
    StateEventLeafMismatch {
        event: i64,
        unit: String,
        leaf_index: u64,
    },
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::LeafChanged { index } => {
                write!(
                    f,
                    "leaf {index}: entry does not match its stored leaf hash (changed)"
                )
            }
            AuditProblem::Reordered { first, second } => {
                write!(f, "leaves {first} and {second} were swapped (reordered)")
            }
            AuditProblem::Gap { from, to } => {
                write!(f, "leaves {from}..{to} are missing ({} deleted)", to - from)
            }
            AuditProblem::LeafBeyondHead { index, head } => write!(
                f,
                "leaf {index} is stored beyond the log head {head} (the head was moved back)"
            ),
            AuditProblem::NodeMismatch {
                level,
                index,
                first_leaf,
                last_leaf,
            } => write!(
                f,
                "node (level {level}, index {index}): leaves {first_leaf}..={last_leaf} do not \
                 hash to the stored node (the node or a leaf below it changed)"
            ),
            AuditProblem::MissingNode { level, index } => {
                write!(f, "node (level {level}, index {index}) is missing")
            }
            AuditProblem::UnexpectedNode { level, index } => {
                write!(
                    f,
                    "node (level {level}, index {index}) does not belong to the log"
                )
            }
            AuditProblem::UnreadableRow { detail } => write!(f, "unreadable row: {detail}"),
            AuditProblem::CheckpointMismatch {
                size,
                stored_root,
                computed_root,
            } => write!(
                f,
                "checkpoint at size {size}: stored root {stored_root}, the leaves give \
                 {computed_root}"
            ),
            AuditProblem::Truncated {
                checkpoint_size,
                log_size,
            } => write!(
                f,
                "checkpoint at size {checkpoint_size} but the log holds {log_size} leaves \
                 (truncated)"
            ),
            AuditProblem::CheckpointUnverifiable { size, reason } => {
                write!(
                    f,
                    "checkpoint at size {size} cannot be recomputed: {reason}"
                )
            }
            AuditProblem::CheckpointNote { size, detail } => {
                write!(f, "checkpoint at size {size}: signed note {detail}")
            }
            AuditProblem::CheckpointSignature { size, detail } => {
                write!(f, "checkpoint at size {size}: signature {detail}")
            }
            AuditProblem::EventLeafMissing {
                event,
                change_id,
                leaf_index,
                log_size,
            } => write!(
                f,
                "event {event} of {change_id} names leaf {leaf_index}, but the log holds \
                 {log_size} leaves (its newest leaves were removed)"
            ),
            AuditProblem::EventLeafMismatch {
                event,
                change_id,
                leaf_index,
            } => write!(
                f,
                "event {event} of {change_id} names leaf {leaf_index}, which holds another \
                 entry than the event's envelope"
            ),
            AuditProblem::StageResultUnlogged {
                change_id,
                stage,
                envelope,
            } => write!(
                f,
                "stage result {stage} of {change_id} is signed by {envelope}, which is not in \
                 the log"
            ),
            AuditProblem::StateEventLeafMissing {
                event,
                unit,
                leaf_index,
                log_size,
            } => write!(
                f,
                "state event {event} of {unit} names leaf {leaf_index}, but the log holds \
                 {log_size} leaves (its newest leaves were removed)"
            ),
            AuditProblem::StateEventLeafMismatch {
                event,
                unit,
                leaf_index,
            } => write!(
                f,
                "state event {event} of {unit} names leaf {leaf_index}, which holds another \
                 entry than the event's signed envelope"
            ),
        }
    }
}

/// What the audit found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    /// The log head the audit read.
    pub log_size: u64,
    pub leaves_checked: u64,
    pub nodes_checked: u64,
    pub checkpoints_checked: u64,
    /// The recomputed tree head of `log_size` leaves, if the leaves allowed computing it.
    #[serde(serialize_with = "opt_hex")]
    pub root: Option<Hash>,
    pub problems: Vec<AuditProblem>,
    /// Problems found beyond the first [`MAX_LISTED`].
    pub more_problems: u64,
}

fn opt_hex<S: serde::Serializer>(v: &Option<Hash>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(h) => s.serialize_some(&hex::encode(h)),
        None => s.serialize_none(),
    }
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.more_problems == 0
    }
}

/// A level-1 node that did not match while both its leaves looked intact: the raw material for
/// telling a swap from a change.
#[derive(Debug, Clone, Copy)]
struct PairMismatch {
    index: u64,
    left: Hash,
    right: Hash,
    stored: Hash,
}

/// A leaf whose entry does not hash to its stored leaf hash.
#[derive(Debug, Clone, Copy)]
struct LeafMismatch {
    index: u64,
    computed: Hash,
    stored: Hash,
}

/// The streaming audit. Feed it the leaves in index order with [`Auditor::leaf`], passing the
/// stored nodes whose last leaf is that leaf; stored nodes for no fed leaf go to
/// [`Auditor::stray_node`]; then [`Auditor::finish`].
pub struct Auditor {
    head: u64,
    next: u64,
    /// (level, hash, tainted): the right edge. Tainted hashes sit above an already reported
    /// mismatch, so a mismatch above them is a consequence, not news.
    stack: Vec<(u8, Hash, bool)>,
    /// Checkpoints by size, ascending; `cursor` is the next to check.
    checkpoints: Vec<CheckpointRecord>,
    cursor: usize,
    /// Set at the first gap: leaf positions above it are unknown, so nodes and checkpoints above
    /// it cannot be recomputed.
    broken_at: Option<u64>,
    pairs: Vec<PairMismatch>,
    changed_leaves: Vec<LeafMismatch>,
    report: AuditReport,
}

impl Auditor {
    /// An audit of a log whose head is `head` with the stored `checkpoints`. Checkpoints whose
    /// note disagrees with their row, or that lie beyond the head, are reported at once.
    pub fn new(head: u64, mut checkpoints: Vec<CheckpointRecord>) -> Auditor {
        checkpoints.sort_by_key(|c| c.size);
        let mut auditor = Auditor {
            head,
            next: 0,
            stack: Vec::new(),
            checkpoints: Vec::new(),
            cursor: 0,
            broken_at: None,
            pairs: Vec::new(),
            changed_leaves: Vec::new(),
            report: AuditReport {
                log_size: head,
                ..AuditReport::default()
            },
        };
        for cp in checkpoints {
            auditor.report.checkpoints_checked += 1;
            match parse_checkpoint_note(&cp.note) {
                Err(detail) => auditor.problem(AuditProblem::CheckpointNote {
                    size: cp.size,
                    detail: format!("does not parse: {detail}"),
                }),
                Ok((origin, size, root)) => {
                    if size != cp.size || root != cp.root || origin != cp.origin {
                        auditor.problem(AuditProblem::CheckpointNote {
                            size: cp.size,
                            detail: format!(
                                "states origin {origin:?}, size {size}, root {}; the row says \
                                 origin {:?}, size {}, root {}",
                                hex::encode(root),
                                cp.origin,
                                cp.size,
                                hex::encode(cp.root)
                            ),
                        });
                    }
                }
            }
            if cp.size > head {
                auditor.problem(AuditProblem::Truncated {
                    checkpoint_size: cp.size,
                    log_size: head,
                });
            } else if cp.size == 0 {
                auditor.check_root(&cp, EMPTY_ROOT);
            } else {
                auditor.checkpoints.push(cp);
            }
        }
        auditor
    }

    fn problem(&mut self, problem: AuditProblem) {
        if self.report.problems.len() < MAX_LISTED {
            self.report.problems.push(problem);
        } else {
            self.report.more_problems += 1;
        }
    }

    fn check_root(&mut self, cp: &CheckpointRecord, computed: Hash) {
        if computed != cp.root {
            self.problem(AuditProblem::CheckpointMismatch {
                size: cp.size,
                stored_root: hex::encode(cp.root),
                computed_root: hex::encode(computed),
            });
        }
    }

    /// A row the store could not decode: reported, and the audit goes on.
    pub fn unreadable(&mut self, err: &StoreError) {
        self.problem(AuditProblem::UnreadableRow {
            detail: err.to_string(),
        });
    }

    /// A stored node whose last leaf was never fed (it lies in a gap, or beyond the leaves).
    pub fn stray_node(&mut self, node: &LogNode) {
        self.report.nodes_checked += 1;
        if self.broken_at.is_none() {
            self.problem(AuditProblem::UnexpectedNode {
                level: node.level,
                index: node.index,
            });
        }
    }

    /// The next leaf in index order, with the stored nodes that end at it.
    pub fn leaf(&mut self, leaf: &LogLeaf, stored: &[LogNode]) {
        self.report.leaves_checked += 1;
        self.report.nodes_checked += stored.len() as u64;
        if leaf.index >= self.head {
            self.problem(AuditProblem::LeafBeyondHead {
                index: leaf.index,
                head: self.head,
            });
            return;
        }
        if leaf.index > self.next {
            self.problem(AuditProblem::Gap {
                from: self.next,
                to: leaf.index,
            });
            self.broken_at.get_or_insert(self.next);
        }
        self.next = leaf.index + 1;
        let computed = leaf_hash(&leaf.entry);
        let mut tainted = false;
        if computed != leaf.leaf_hash {
            tainted = true;
            self.changed_leaves.push(LeafMismatch {
                index: leaf.index,
                computed,
                stored: leaf.leaf_hash,
            });
        }
        if self.broken_at.is_some() {
            return;
        }

        // Push the leaf and compare every subtree it completes with the stored node.
        let mut level = 0u8;
        let mut hash = computed;
        // Which of `stored` a completed subtree claimed (a node per level, levels < 64).
        let mut claimed = 0u64;
        while let Some(&(top, left, left_tainted)) = self.stack.last() {
            if top != level {
                break;
            }
            self.stack.pop();
            let right = hash;
            hash = node_hash(&left, &right);
            level += 1;
            let index = leaf.index >> level;
            tainted |= left_tainted;
            match stored.iter().position(|n| n.level == level) {
                None => self.problem(AuditProblem::MissingNode { level, index }),
                Some(pos) => {
                    claimed |= 1 << pos.min(63);
                    let node = &stored[pos];
                    if node.hash != hash && !tainted {
                        if level == 1 && self.pairs.len() < MAX_REORDER_CANDIDATES {
                            self.pairs.push(PairMismatch {
                                index,
                                left,
                                right,
                                stored: node.hash,
                            });
                        } else {
                            self.node_mismatch(level, index);
                        }
                        tainted = true;
                    }
                }
            }
        }
        self.stack.push((level, hash, tainted));
        for (pos, node) in stored.iter().enumerate() {
            if claimed & (1 << pos.min(63)) == 0 {
                self.problem(AuditProblem::UnexpectedNode {
                    level: node.level,
                    index: node.index,
                });
            }
        }

        while let Some(cp) = self.checkpoints.get(self.cursor) {
            if cp.size != self.next {
                break;
            }
            let cp = cp.clone();
            self.cursor += 1;
            let root = self.root();
            self.check_root(&cp, root);
        }
    }

    fn node_mismatch(&mut self, level: u8, index: u64) {
        self.problem(AuditProblem::NodeMismatch {
            level,
            index,
            first_leaf: index << level,
            last_leaf: ((index + 1) << level) - 1,
        });
    }

    /// The head of the leaves fed so far.
    fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc, _)) = iter.next() else {
            return EMPTY_ROOT;
        };
        for (_, left, _) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }

    /// Closes the audit: missing tail leaves, unchecked checkpoints, and the reordering analysis.
    pub fn finish(mut self) -> AuditReport {
        if self.next < self.head {
            self.problem(AuditProblem::Gap {
                from: self.next,
                to: self.head,
            });
            self.broken_at.get_or_insert(self.next);
        }
        while let Some(cp) = self.checkpoints.get(self.cursor).cloned() {
            self.cursor += 1;
            let reason = match self.broken_at {
                Some(at) => format!("leaf {at} is missing"),
                None => "its leaves were not reached".to_string(),
            };
            self.problem(AuditProblem::CheckpointUnverifiable {
                size: cp.size,
                reason,
            });
        }
        self.report.root = self.broken_at.is_none().then(|| self.root());
        self.classify_leaf_swaps();
        self.classify_pair_swaps();
        self.report
    }

    /// Leaves whose entries were swapped without their leaf hashes: each entry hashes to the
    /// other's stored leaf hash.
    fn classify_leaf_swaps(&mut self) {
        let mut changed = std::mem::take(&mut self.changed_leaves);
        let mut i = 0;
        while i < changed.len() {
            let a = changed[i];
            let partner = changed[i + 1..]
                .iter()
                .position(|b| a.computed == b.stored && b.computed == a.stored)
                .map(|p| p + i + 1);
            match partner {
                Some(j) => {
                    let b = changed.remove(j);
                    changed.remove(i);
                    self.problem(AuditProblem::Reordered {
                        first: a.index,
                        second: b.index,
                    });
                }
                None => {
                    self.problem(AuditProblem::LeafChanged { index: a.index });
                    i += 1;
                }
            }
        }
    }

    /// Level-1 mismatches that a swap of two leaves explains: within one pair, or across two
    /// pairs (both stored nodes then match once the two leaves trade places).
    fn classify_pair_swaps(&mut self) {
        let mut pairs = std::mem::take(&mut self.pairs);
        let leaves = |p: &PairMismatch| [p.left, p.right];
        'outer: while let Some(p) = pairs.first().copied() {
            pairs.remove(0);
            if node_hash(&p.right, &p.left) == p.stored {
                self.problem(AuditProblem::Reordered {
                    first: 2 * p.index,
                    second: 2 * p.index + 1,
                });
                continue;
            }
            for (qi, q) in pairs.iter().enumerate() {
                for a in 0..2 {
                    for b in 0..2 {
                        let (mut pl, mut ql) = (leaves(&p), leaves(q));
                        std::mem::swap(&mut pl[a], &mut ql[b]);
                        if node_hash(&pl[0], &pl[1]) == p.stored
                            && node_hash(&ql[0], &ql[1]) == q.stored
                        {
                            let second = 2 * q.index + b as u64;
                            pairs.remove(qi);
                            self.problem(AuditProblem::Reordered {
                                first: 2 * p.index + a as u64,
                                second,
                            });
                            continue 'outer;
                        }
                    }
                }
            }
            self.node_mismatch(1, p.index);
        }
    }
}

/// Options of an audit.
#[derive(Default)]
pub struct AuditOptions<'a> {
    /// Verifies a checkpoint's signed note (e.g. with the log's public key); `Err` names what is
    /// wrong. Without it the audit checks the notes' bodies, not their signatures.
    #[allow(clippy::type_complexity)]
    pub verify_note: Option<&'a (dyn Fn(&CheckpointRecord) -> Result<(), String> + Sync)>,
}

/// Leaves per chunk the audit reads at a time (and nodes ending in the same range).
const CHUNK: u64 = 32_768;
/// Chunks read ahead of the hashing.
const READ_AHEAD: usize = 4;

/// Reads `[0, head)` in aligned chunks on a task of its own, so that decoding rows runs beside
/// the hashing; a chunk that fails to read is passed on as the error and ends the reading.
fn read_ahead<S, T, F, Fut>(store: &S, head: u64, read: F) -> mpsc::Receiver<(u64, Result<Vec<T>>)>
where
    S: Store + Clone,
    T: Send + 'static,
    F: Fn(S, u64, u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<T>>> + Send,
{
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let store = store.clone();
    tokio::spawn(async move {
        let mut at = 0;
        while at < head {
            let end = at.saturating_add(CHUNK).min(head);
            let chunk = read(store.clone(), at, end).await;
            let failed = chunk.is_err();
            if tx.send((at, chunk)).await.is_err() || failed {
                break;
            }
            at = end;
        }
    });
    rx
}

/// The leaves `[from, to)`: by the bulk read when it shows every one present and well formed,
/// else row by row (which names an unreadable row, and lets a gap show as one).
async fn read_leaf_chunk<S: Store>(store: &S, from: u64, to: u64) -> Result<Vec<LogLeaf>> {
    let packed = store.packed_leaves(from, to).await?;
    if packed.count != to - from || packed.bytes.len() as u64 != 64 * packed.count {
        return store.leaves(from, to).await;
    }
    Ok(packed
        .bytes
        .chunks_exact(64)
        .zip(from..)
        .map(|(row, index)| LogLeaf {
            index,
            entry: row[..32].try_into().expect("64-byte chunk"),
            leaf_hash: row[32..].try_into().expect("64-byte chunk"),
            envelope_digest: None,
            created_at: 0,
        })
        .collect())
}

/// The number of perfect subtrees of level ≥ 1 whose last leaf is in `[from, to)`: a tree of n
/// leaves has n − popcount(n) of them.
fn nodes_ending_in(from: u64, to: u64) -> u64 {
    let below = |n: u64| n - u64::from(n.count_ones());
    below(to) - below(from)
}

/// The nodes ending in `[from, to)`. The bulk read is trusted for positions only when its rows
/// are exactly the expected keys: none at a level its last leaf cannot complete (keys are
/// unique) and as many as expected. Otherwise row by row, so missing and stray nodes are named.
async fn read_node_chunk<S: Store>(store: &S, from: u64, to: u64) -> Result<Vec<LogNode>> {
    let packed = store.packed_nodes(from, to).await?;
    let expected = nodes_ending_in(from, to);
    if packed.count != expected
        || packed.misplaced != 0
        || packed.hashes.len() as u64 != 32 * packed.count
    {
        return store.nodes(from, to).await;
    }
    let mut hashes = packed.hashes.chunks_exact(32);
    let mut nodes = Vec::with_capacity(expected as usize);
    for end in from..to {
        for level in 1..=((end + 1).trailing_zeros() as u8).min(62) {
            let hash = hashes.next().expect("count checked above");
            nodes.push(LogNode {
                level,
                index: ((end + 1) >> level) - 1,
                hash: hash.try_into().expect("32-byte chunk"),
            });
        }
    }
    Ok(nodes)
}

/// Audits the whole stored log: reads the leaves and the nodes below the head in aligned chunks
/// (index order) and feeds them through an [`Auditor`].
pub async fn audit<S: Store + StateStore + Clone>(
    store: &S,
    options: &AuditOptions<'_>,
) -> Result<AuditReport> {
    let head = store.log_size().await?;
    let checkpoints = store.checkpoints().await?;
    let mut signature_problems = Vec::new();
    if let Some(verify) = options.verify_note {
        for cp in &checkpoints {
            if let Err(detail) = verify(cp) {
                signature_problems.push(AuditProblem::CheckpointSignature {
                    size: cp.size,
                    detail,
                });
            }
        }
    }
    let mut auditor = Auditor::new(head, checkpoints);
    for p in signature_problems {
        auditor.problem(p);
    }

    let mut leaf_chunks = read_ahead(store, head, |s: S, from, to| async move {
        read_leaf_chunk(&s, from, to).await
    });
    let mut node_chunks = read_ahead(store, head, |s: S, from, to| async move {
        read_node_chunk(&s, from, to).await
    });
    let mut stored: Vec<LogNode> = Vec::with_capacity(64);
    while let Some((from, leaves)) = leaf_chunks.recv().await {
        let Some((node_from, nodes)) = node_chunks.recv().await else {
            return Err(StoreError::Log("the node reader stopped early".into()));
        };
        debug_assert_eq!(from, node_from);
        let leaves = match leaves {
            Ok(leaves) => leaves,
            Err(e @ StoreError::BadRow { .. }) => {
                auditor.unreadable(&e);
                auditor.broken_at.get_or_insert(from);
                break;
            }
            Err(e) => return Err(e),
        };
        let nodes = match nodes {
            Ok(nodes) => nodes,
            Err(e @ StoreError::BadRow { .. }) => {
                auditor.unreadable(&e);
                auditor.broken_at.get_or_insert(from);
                break;
            }
            Err(e) => return Err(e),
        };
        // Both slices cover the same leaf range, in the order appends produce them.
        let mut nodes = nodes.into_iter().peekable();
        for leaf in &leaves {
            stored.clear();
            while let Some(node) = nodes.next_if(|n| n.end_leaf() <= leaf.index) {
                if node.end_leaf() < leaf.index {
                    auditor.stray_node(&node);
                } else {
                    stored.push(node);
                }
            }
            auditor.leaf(leaf, &stored);
        }
        for node in nodes {
            auditor.stray_node(&node);
        }
    }
    // A leaf row and the head that covers it commit together, so a leaf read first and a head
    // read after it that does not cover it is a leaf beyond the head.
    let head_now = store.log_size().await?;
    for leaf in store.leaves(head_now, head_now.saturating_add(1)).await? {
        let head_after = store.log_size().await?;
        if leaf.index >= head_after {
            auditor.problem(AuditProblem::LeafBeyondHead {
                index: leaf.index,
                head: head_after,
            });
        }
    }
    for problem in cross_check(store, head_now).await? {
        auditor.problem(problem);
    }
    Ok(auditor.finish())
}

/// Events read per page.
const EVENT_PAGE: u32 = 10_000;

/// What an event says about the log: the leaf it names and the entry that leaf must hold.
fn event_leaf(event: &EventRecord) -> Option<(u64, Option<Hash>)> {
    let index = event.payload.get("leaf_index")?.as_u64()?;
    let entry = event
        .payload
        .get("envelope")
        .and_then(serde_json::Value::as_str)
        .and_then(|d| d.parse::<Digest>().ok())
        .map(|d| d.0);
    Some((index, entry))
}

/// The records that point into the log, held against a log of `log_size` leaves.
async fn cross_check<S: Store + StateStore>(store: &S, log_size: u64) -> Result<Vec<AuditProblem>> {
    let mut problems = Vec::new();
    // Entries events showed to be in the log, so that stage results signed by them need no
    // search (the leaves have no index on their entry).
    let mut logged: HashSet<Hash> = HashSet::new();
    let mut after = 0;
    loop {
        let page = store.events(None, after, EVENT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for event in &page {
            let Some((leaf_index, entry)) = event_leaf(event) else {
                continue;
            };
            if leaf_index >= log_size {
                problems.push(AuditProblem::EventLeafMissing {
                    event: event.id,
                    change_id: event.change_id.clone(),
                    leaf_index,
                    log_size,
                });
                continue;
            }
            // A missing leaf row below the head is reported as a gap by the log audit.
            let leaf = store.leaves(leaf_index, leaf_index + 1).await?;
            match (leaf.first(), entry) {
                (Some(leaf), Some(entry)) if leaf.entry != entry => {
                    problems.push(AuditProblem::EventLeafMismatch {
                        event: event.id,
                        change_id: event.change_id.clone(),
                        leaf_index,
                    });
                }
                (Some(leaf), _) => {
                    logged.insert(leaf.entry);
                }
                (None, _) => {}
            }
        }
    }
    for change in store.changes(u32::MAX).await? {
        for result in store.stage_results(&change.change_id).await? {
            let Some(envelope) = result.envelope_digest else {
                continue;
            };
            if logged.contains(&envelope.0) {
                continue;
            }
            let found = store
                .find_leaf(&envelope.0)
                .await?
                .is_some_and(|leaf| leaf.index < log_size);
            if !found {
                problems.push(AuditProblem::StageResultUnlogged {
                    change_id: result.change_id.clone(),
                    stage: result.stage.clone(),
                    envelope: envelope.to_string(),
                });
            }
        }
    }
    problems.extend(cross_check_state_events(store, log_size).await?);
    Ok(problems)
}

/// The state backend's events held against the log: each names the leaf of its signed
/// statement, which must hold the SHA-256 of the envelope kept with the event.
async fn cross_check_state_events<S: Store + StateStore>(
    store: &S,
    log_size: u64,
) -> Result<Vec<AuditProblem>> {
    let mut problems = Vec::new();
    let mut after = 0;
    loop {
        let page = store.state_events(None, after, EVENT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for event in &page {
            let Some(leaf_index) = event.leaf_index else {
                continue;
            };
            if leaf_index >= log_size {
                problems.push(AuditProblem::StateEventLeafMissing {
                    event: event.id,
                    unit: event.unit.clone(),
                    leaf_index,
                    log_size,
                });
                continue;
            }
            let entry = event
                .envelope
                .as_deref()
                .map(|e| Digest::of(e.as_bytes()).0);
            // A missing leaf row below the head is reported as a gap by the log audit.
            if let Some(leaf) = store.leaves(leaf_index, leaf_index + 1).await?.first()
                && entry != Some(leaf.entry)
            {
                problems.push(AuditProblem::StateEventLeafMismatch {
                    event: event.id,
                    unit: event.unit.clone(),
                    leaf_index,
                });
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontier::Frontier;
    use proptest::prelude::*;
    use sluice_evidence::merkle::MemoryTree;

    /// A log in memory as the store would hold it.
    struct Fixture {
        leaves: Vec<LogLeaf>,
        nodes: Vec<LogNode>,
    }

    fn fixture(n: u64) -> Fixture {
        let entries: Vec<Hash> = (0..n)
            .map(|i| sluice_evidence::sha256(&i.to_be_bytes()))
            .collect();
        let mut f = Frontier::default();
        let rows = f.append(&entries);
        Fixture {
            leaves: rows
                .leaves
                .iter()
                .map(|&(index, entry, leaf_hash)| LogLeaf {
                    index,
                    entry,
                    leaf_hash,
                    envelope_digest: None,
                    created_at: 0,
                })
                .collect(),
            nodes: rows.nodes,
        }
    }

    fn checkpoint(size: u64, leaves: &[LogLeaf]) -> CheckpointRecord {
        let tree = MemoryTree::from_leaves(leaves.iter().take(size as usize).map(|l| l.leaf_hash));
        let root = tree.root();
        let body = crate::log::checkpoint_body("test/log", size, &root);
        CheckpointRecord {
            size,
            root,
            origin: "test/log".into(),
            note: sluice_evidence::checkpoint::sign_note(
                &body,
                "test/log",
                &ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
            )
            .unwrap(),
            created_at: 0,
        }
    }

    fn run(head: u64, fx: &Fixture, cps: Vec<CheckpointRecord>) -> AuditReport {
        let mut a = Auditor::new(head, cps);
        let mut nodes = fx.nodes.clone();
        nodes.sort_by_key(|n| (n.end_leaf(), n.level));
        let mut it = nodes.into_iter().peekable();
        for leaf in &fx.leaves {
            let mut batch = Vec::new();
            while let Some(n) = it.peek() {
                if n.end_leaf() > leaf.index {
                    break;
                }
                let n = it.next().unwrap();
                if n.end_leaf() < leaf.index {
                    a.stray_node(&n);
                } else {
                    batch.push(n);
                }
            }
            a.leaf(leaf, &batch);
        }
        for n in it {
            a.stray_node(&n);
        }
        a.finish()
    }

    #[test]
    fn a_clean_log_is_clean() {
        let fx = fixture(100);
        let cps = vec![
            checkpoint(0, &fx.leaves),
            checkpoint(37, &fx.leaves),
            checkpoint(100, &fx.leaves),
        ];
        let r = run(100, &fx, cps);
        assert!(r.is_clean(), "{:?}", r.problems);
        assert_eq!(r.leaves_checked, 100);
        assert_eq!(r.nodes_checked, 100 - 100u64.count_ones() as u64);
        assert_eq!(r.checkpoints_checked, 3);
        assert_eq!(
            r.root,
            Some(MemoryTree::from_leaves(fx.leaves.iter().map(|l| l.leaf_hash)).root())
        );
    }

    #[test]
    fn a_changed_entry_is_pinned_to_its_leaf() {
        let mut fx = fixture(16);
        let cps = vec![checkpoint(16, &fx.leaves)];
        fx.leaves[5].entry[0] ^= 1;
        let r = run(16, &fx, cps);
        assert!(
            r.problems.contains(&AuditProblem::LeafChanged { index: 5 }),
            "{:?}",
            r.problems
        );
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, AuditProblem::CheckpointMismatch { size: 16, .. }))
        );
        // The consequence further up is not reported again.
        assert!(
            !r.problems
                .iter()
                .any(|p| matches!(p, AuditProblem::NodeMismatch { .. }))
        );
    }

    #[test]
    fn a_consistently_rewritten_leaf_shows_at_its_node() {
        let mut fx = fixture(16);
        fx.leaves[6].entry = [9; 32];
        fx.leaves[6].leaf_hash = leaf_hash(&[9; 32]);
        let r = run(16, &fx, vec![]);
        assert_eq!(
            r.problems,
            vec![AuditProblem::NodeMismatch {
                level: 1,
                index: 3,
                first_leaf: 6,
                last_leaf: 7
            }]
        );
    }

    #[test]
    fn a_changed_node_is_reported_alone() {
        let mut fx = fixture(16);
        let pos = fx
            .nodes
            .iter()
            .position(|n| n.level == 2 && n.index == 1)
            .unwrap();
        fx.nodes[pos].hash[31] ^= 0x80;
        let r = run(16, &fx, vec![checkpoint(16, &fixture(16).leaves)]);
        assert_eq!(
            r.problems,
            vec![AuditProblem::NodeMismatch {
                level: 2,
                index: 1,
                first_leaf: 4,
                last_leaf: 7
            }]
        );
    }

    #[test]
    fn swapped_rows_are_reordering() {
        for (a, b) in [(2usize, 3usize), (3, 10), (0, 15)] {
            let mut fx = fixture(16);
            let (ea, eb) = (fx.leaves[a].clone(), fx.leaves[b].clone());
            fx.leaves[a] = LogLeaf {
                index: a as u64,
                ..eb
            };
            fx.leaves[b] = LogLeaf {
                index: b as u64,
                ..ea
            };
            let r = run(16, &fx, vec![]);
            assert_eq!(
                r.problems,
                vec![AuditProblem::Reordered {
                    first: a as u64,
                    second: b as u64
                }],
                "swap {a} {b}"
            );
        }
    }

    #[test]
    fn swapped_entries_are_reordering() {
        let mut fx = fixture(16);
        let (ea, eb) = (fx.leaves[4].entry, fx.leaves[9].entry);
        fx.leaves[4].entry = eb;
        fx.leaves[9].entry = ea;
        let r = run(16, &fx, vec![]);
        assert_eq!(
            r.problems,
            vec![AuditProblem::Reordered {
                first: 4,
                second: 9
            }]
        );
    }

    #[test]
    fn deleted_leaves_and_truncation() {
        let fx = fixture(20);
        let cps = vec![checkpoint(8, &fx.leaves), checkpoint(20, &fx.leaves)];
        // A deleted leaf in the middle: a gap; the checkpoint above it cannot be recomputed.
        let mut gap = fixture(20);
        gap.leaves.remove(11);
        let r = run(20, &gap, cps.clone());
        assert!(
            r.problems.contains(&AuditProblem::Gap { from: 11, to: 12 }),
            "{:?}",
            r.problems
        );
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, AuditProblem::CheckpointUnverifiable { size: 20, .. }))
        );
        assert!(
            !r.problems
                .iter()
                .any(|p| matches!(p, AuditProblem::CheckpointMismatch { size: 8, .. }))
        );
        // The tail cut and the head moved back: the checkpoint is larger than the log.
        let mut cut = fixture(20);
        cut.leaves.truncate(12);
        cut.nodes.retain(|n| n.end_leaf() < 12);
        let r = run(12, &cut, cps.clone());
        assert!(r.problems.contains(&AuditProblem::Truncated {
            checkpoint_size: 20,
            log_size: 12
        }));
        // The tail cut but the head left alone: a gap at the end.
        let r = run(20, &cut, cps);
        assert!(r.problems.contains(&AuditProblem::Gap { from: 12, to: 20 }));
    }

    #[test]
    fn a_flipped_checkpoint_is_caught_twice() {
        let fx = fixture(10);
        let mut cp = checkpoint(10, &fx.leaves);
        cp.root[0] ^= 1;
        let r = run(10, &fx, vec![cp]);
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, AuditProblem::CheckpointMismatch { size: 10, .. }))
        );
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, AuditProblem::CheckpointNote { size: 10, .. }))
        );
    }

    #[test]
    fn missing_and_unexpected_nodes() {
        let mut fx = fixture(8);
        fx.nodes.retain(|n| !(n.level == 2 && n.index == 0));
        fx.nodes.push(LogNode {
            level: 1,
            index: 100,
            hash: [0; 32],
        });
        let r = run(8, &fx, vec![]);
        assert!(
            r.problems
                .contains(&AuditProblem::MissingNode { level: 2, index: 0 })
        );
        assert!(r.problems.contains(&AuditProblem::UnexpectedNode {
            level: 1,
            index: 100
        }));
    }

    proptest! {
        // Any single flipped bit in any leaf entry, leaf hash or node is found.
        #[test]
        fn every_single_flip_is_found(n in 2u64..200, which in 0usize..3, pos in 0usize..1000, bit in 0u8..8) {
            let mut fx = fixture(n);
            match which {
                0 => { let i = pos % fx.leaves.len(); fx.leaves[i].entry[pos % 32] ^= 1 << bit; }
                1 => { let i = pos % fx.leaves.len(); fx.leaves[i].leaf_hash[pos % 32] ^= 1 << bit; }
                _ => { let i = pos % fx.nodes.len(); fx.nodes[i].hash[pos % 32] ^= 1 << bit; }
            }
            let r = run(n, &fx, vec![]);
            prop_assert!(!r.is_clean());
        }
    }
}
