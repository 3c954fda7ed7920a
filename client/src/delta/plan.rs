//! Matching two versions of a file by their signatures (PROTOCOL.md §8.4, §8.5), as pure
//! functions: which pieces of the source the basis already holds, which it lacks, and how the
//! requests that fetch or describe them are cut to fit the protocol's limits.
//!
//! The same steps serve both directions. A delta `GET` matches the server's signature (the
//! source) against the local file's cut (the basis); a delta `SEND` matches the local cut (the
//! source) against the server's signature (the basis).

use sft_io::chunker::Segment;
use sft_protocol::delta::{Entry, Range, MAX_RANGES};
use sft_protocol::limits::MAX_HEADER_LEN;
use std::collections::{HashMap, HashSet};

/// One stretch of the source file, in source order: either bytes the basis holds (`from`),
/// or bytes that must cross the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    /// Offset in the source.
    pub(crate) at: u64,
    /// Length in bytes (never 0).
    pub(crate) len: u64,
    /// Where the basis holds these bytes; `None`: a literal, sent or fetched.
    pub(crate) from: Option<u64>,
}

/// The pieces described by `entries`, laid end to end from `start`.
pub(crate) fn locate(entries: &[Entry], start: u64) -> Vec<Segment> {
    let mut at = start;
    entries
        .iter()
        .map(|&entry| {
            let s = Segment { offset: at, entry };
            at += u64::from(entry.len);
            s
        })
        .collect()
}

/// Where each distinct piece of the basis is (its first occurrence).
pub(crate) fn index(basis: &[Segment]) -> HashMap<Entry, u64> {
    let mut map = HashMap::with_capacity(basis.len());
    for s in basis {
        map.entry(s.entry).or_insert(s.offset);
    }
    map
}

/// Each source piece as a part: a copy where the basis has a piece of the same length and
/// digest, a literal otherwise.
pub(crate) fn match_pieces(source: &[Segment], basis: &HashMap<Entry, u64>) -> Vec<Part> {
    source
        .iter()
        .map(|s| Part {
            at: s.offset,
            len: u64::from(s.entry.len),
            from: basis.get(&s.entry).copied(),
        })
        .collect()
}

/// What the level-1 signatures of the two versions say.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Level1 {
    /// The source's segments the basis holds, as copies.
    pub(crate) copies: Vec<Part>,
    /// The source's segments the basis does not hold.
    pub(crate) missing: Vec<Segment>,
    /// The basis's segments no source segment matched: where the missing bytes may still be
    /// found, chunk by chunk.
    pub(crate) unused: Vec<Segment>,
}

/// Matches the source's segments against the basis's.
pub(crate) fn level1(source: &[Segment], basis: &[Segment]) -> Level1 {
    let map = index(basis);
    let mut out = Level1::default();
    for (part, seg) in match_pieces(source, &map).into_iter().zip(source) {
        match part.from {
            Some(_) => out.copies.push(part),
            None => out.missing.push(*seg),
        }
    }
    let wanted: HashSet<Entry> = source.iter().map(|s| s.entry).collect();
    out.unused = basis
        .iter()
        .filter(|s| !wanted.contains(&s.entry))
        .copied()
        .collect();
    out
}

/// The whole plan: the level-1 copies with the level-0 parts of the missing segments (`chunks`:
/// the missing segments' chunks, located in the source), matched against `basis_chunks` (the
/// unused basis segments' chunks, located in the basis); in source order, coalesced.
pub(crate) fn plan(copies: &[Part], chunks: &[Segment], basis_chunks: &[Segment]) -> Vec<Part> {
    let mut parts = match_pieces(chunks, &index(basis_chunks));
    parts.extend_from_slice(copies);
    parts.sort_unstable_by_key(|p| p.at);
    coalesce(parts)
}

/// Joins neighbours that can go as one: literals that follow each other, and copies of
/// consecutive basis bytes.
pub(crate) fn coalesce(parts: Vec<Part>) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::with_capacity(parts.len());
    for p in parts {
        if let Some(last) = out.last_mut() {
            let joins = last.at + last.len == p.at
                && match (last.from, p.from) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a + last.len == b,
                    _ => false,
                };
            if joins {
                last.len += p.len;
                continue;
            }
        }
        out.push(p);
    }
    out
}

/// The literals of `parts`, as `[offset,length]` ranges of the source.
pub(crate) fn literals(parts: &[Part]) -> Vec<Range> {
    parts
        .iter()
        .filter(|p| p.from.is_none())
        .map(|p| [p.at, p.len])
        .collect()
}

/// Bytes of `parts` the basis holds.
pub(crate) fn reused(parts: &[Part]) -> u64 {
    parts
        .iter()
        .filter(|p| p.from.is_some())
        .map(|p| p.len)
        .sum()
}

/// Cuts `ranges` into requests: at most [`MAX_RANGES`] each, and each request line within the
/// header limit, `base` being the length of the line with an empty `"ranges":[]`.
pub(crate) fn batches(ranges: &[Range], base: usize) -> Vec<Vec<Range>> {
    let mut out: Vec<Vec<Range>> = Vec::new();
    let mut len = base;
    for &r in ranges {
        // `[offset,length]` and, but for the first, a comma.
        let text = 3 + digits(r[0]) + digits(r[1]);
        let open = out
            .last()
            .filter(|b| b.len() < MAX_RANGES && len + 1 + text <= MAX_HEADER_LEN);
        match open {
            Some(_) => {
                len += 1 + text;
                out.last_mut().expect("open").push(r);
            }
            None => {
                len = base + text;
                out.push(vec![r]);
            }
        }
    }
    out
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(len: u32, tag: u8) -> Entry {
        Entry {
            len,
            digest: [tag; 8],
        }
    }

    #[test]
    fn level1_finds_copies_missing_and_unused() {
        let basis = locate(&[e(10, 1), e(20, 2), e(30, 3)], 0);
        let source = locate(&[e(20, 2), e(5, 9), e(10, 1)], 0);
        let l = level1(&source, &basis);
        assert_eq!(
            l.copies,
            [
                Part {
                    at: 0,
                    len: 20,
                    from: Some(10)
                },
                Part {
                    at: 25,
                    len: 10,
                    from: Some(0)
                }
            ]
        );
        assert_eq!(l.missing, locate(&[e(5, 9)], 20));
        assert_eq!(l.unused, locate(&[e(30, 3)], 30));
    }

    #[test]
    fn the_plan_is_in_source_order_and_coalesced() {
        // Source: [seg A copied from basis 0..100] [missing seg 100..130 = chunks x,y,z].
        let copies = [Part {
            at: 0,
            len: 100,
            from: Some(0),
        }];
        let chunks = locate(&[e(10, 7), e(10, 8), e(10, 9)], 100);
        // The basis holds chunk 7 right after A, and chunk 9 somewhere else.
        let basis_chunks = vec![
            Segment {
                offset: 100,
                entry: e(10, 7),
            },
            Segment {
                offset: 500,
                entry: e(10, 9),
            },
        ];
        assert_eq!(
            plan(&copies, &chunks, &basis_chunks),
            [
                Part {
                    at: 0,
                    len: 110,
                    from: Some(0)
                },
                Part {
                    at: 110,
                    len: 10,
                    from: None
                },
                Part {
                    at: 120,
                    len: 10,
                    from: Some(500)
                },
            ]
        );
    }

    #[test]
    fn batches_keep_to_both_limits() {
        let many: Vec<Range> = (0..1000).map(|i| [i * 10, 5]).collect();
        let b = batches(&many, 100);
        assert!(b.iter().all(|b| b.len() <= MAX_RANGES));
        assert_eq!(b.concat(), many);
        let big: Vec<Range> = (0..300).map(|i| [u64::MAX / 2 + i * 10, 1 << 40]).collect();
        let b = batches(&big, 200);
        // The line limit, not the count, cuts these.
        assert!(
            b.len() == 2 && b[0].len() < MAX_RANGES,
            "{:?}",
            b.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for batch in &b {
            let text = serde_json::to_string(batch).unwrap();
            assert!(200 - 2 + text.len() <= MAX_HEADER_LEN, "{}", text.len());
        }
        assert_eq!(b.concat(), big);
        assert!(batches(&[], 10).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Rebuilding the source from a plan over random pieces gives the source back.
        #[test]
        fn a_plan_rebuilds_the_source(
            basis_tags in proptest::collection::vec(0u8..6, 0..12),
            source_tags in proptest::collection::vec(0u8..9, 0..12),
        ) {
            // A piece's bytes are its tag repeated: equal entries, equal bytes.
            let entry = |t: u8| e(u32::from(t) + 1, t);
            let bytes = |tags: &[u8]| -> Vec<u8> {
                tags.iter().flat_map(|&t| vec![t; t as usize + 1]).collect()
            };
            let basis = locate(&basis_tags.iter().map(|&t| entry(t)).collect::<Vec<_>>(), 0);
            let source = locate(&source_tags.iter().map(|&t| entry(t)).collect::<Vec<_>>(), 0);
            let (b, s) = (bytes(&basis_tags), bytes(&source_tags));
            let l1 = level1(&source, &basis);
            // No level 0 here: missing segments are fetched whole.
            let parts = plan(&l1.copies, &l1.missing, &[]);
            let mut built = Vec::new();
            for p in &parts {
                prop_assert!(p.len > 0);
                let (at, len) = (p.at as usize, p.len as usize);
                prop_assert_eq!(at, built.len());
                match p.from {
                    Some(f) => built.extend_from_slice(&b[f as usize..f as usize + len]),
                    None => built.extend_from_slice(&s[at..at + len]),
                }
            }
            prop_assert_eq!(built, s);
            for w in parts.windows(2) {
                prop_assert!(w[0].from.is_some() || w[1].from.is_some());
            }
        }
    }
}
