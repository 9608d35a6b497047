//! The commit plan: what a commit does for each block of the new version, decided from what is
//! known of the blocks alone (no requests, no I/O), so it can be checked on its own. The
//! commit ([`super::commit`]) carries it out.
//!
//! A blob's committed blocks tile it in order, so the plan is one step per block of the grid,
//! block 0 first; the ids of the steps, in that order, are the Put Block List. Before that,
//! [`sent_whole`] says whether the file goes whole in one Put Blob instead (small files).

use super::grid::Grid;

/// What is known of one block when the commit starts (dirty blocks have all been sent by then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Being uploaded under this id.
    Uploading(String),
    /// Staged in the service under this id, identical to the local copy.
    Staged(String),
    /// Not written since the version writing started from (or since the last commit here).
    Untouched,
}

/// What the commit does for one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Its upload is under way under this id: wait for it.
    Await(String),
    /// Staged already under this id: nothing to send.
    Staged(String),
    /// Unchanged since a commit whose block ids are known (made here, or the old version's own
    /// ids on this grid): commit that id again, nothing to send.
    Reuse(String),
    /// An unchanged range of the version writing started from: the service copies it (Put
    /// Block From URL, conditional on that version).
    CopyFromBase { start: u64, len: u64 },
    /// Sent from the local copy (Put Block): written here, or never written and past the old
    /// version (a hole: the sparse local copy reads zeros there).
    FromLocal { start: u64, len: u64 },
}

/// The commit of a file of `size` bytes on `grid`. `base_len` is how much of the version writing
/// started from is still part of the file (None: there is none); `committed_ids` are block ids
/// known to hold the file's untouched blocks, by index; `known(i)` is the state of block `i`.
pub fn commit(
    grid: &Grid,
    size: u64,
    base_len: Option<u64>,
    committed_ids: &[String],
    known: impl Fn(u64) -> Known,
) -> Vec<Step> {
    (0..grid.count(size))
        .map(|index| {
            let (start, len) = grid.range(index, size);
            match known(index) {
                Known::Uploading(id) => Step::Await(id),
                Known::Staged(id) => Step::Staged(id),
                Known::Untouched => match committed_ids.get(index as usize) {
                    Some(id) => Step::Reuse(id.clone()),
                    None if base_len.is_some_and(|b| start + len <= b) => {
                        Step::CopyFromBase { start, len }
                    }
                    None => Step::FromLocal { start, len },
                },
            }
        })
        .collect()
}

/// Whether the commit sends the file whole, in one Put Blob, instead of blocks and a Put Block
/// List: an empty file, or a file of one block that was written here and not sent yet (one
/// request instead of two, and nothing staged to wait for). A block staged or uploading already
/// is committed by its id (one request too); one left as the old version had it is copied by
/// the service (no download).
pub fn sent_whole(grid: &Grid, size: u64, first_block_dirty: bool) -> bool {
    size == 0 || (grid.count(size) == 1 && first_block_dirty && size <= WHOLE_MAX)
}

/// The largest file sent whole: it is read into memory for its Put Blob (and read back after a
/// lost answer), so large blocks (`--block-size` up to 4000 MiB) go as blocks instead.
pub const WHOLE_MAX: u64 = 8 << 20;

/// Whether the commit should ask for the old version's block ids first (to reuse them instead
/// of having the service copy ranges): none are known yet and some untouched block lies in it.
pub fn wants_old_ids(
    grid: &Grid,
    size: u64,
    base_len: u64,
    committed_ids: &[String],
    touched: impl Fn(u64) -> bool,
) -> bool {
    committed_ids.is_empty()
        && (0..grid.count(size)).any(|i| !touched(i) && grid.extent(i).0 < base_len)
}

/// A copy of the whole file under a new name (a conflict or partial sibling): every block is
/// sent again under the new name, ranges not in the local copy (`local(i)` false) copied by the
/// service from the version writing started from, the rest from the local copy.
pub fn sibling(
    grid: &Grid,
    size: u64,
    base_len: Option<u64>,
    local: impl Fn(u64) -> bool,
) -> Vec<Step> {
    (0..grid.count(size))
        .map(|index| {
            let (start, len) = grid.range(index, size);
            if !local(index) && base_len.is_some_and(|b| start + len <= b) {
                Step::CopyFromBase { start, len }
            } else {
                Step::FromLocal { start, len }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BS: u64 = 100;

    fn id(i: u64) -> String {
        format!("id{i:04}")
    }

    fn range_of(step: &Step) -> Option<(u64, u64)> {
        match step {
            Step::CopyFromBase { start, len } | Step::FromLocal { start, len } => {
                Some((*start, *len))
            }
            _ => None,
        }
    }

    #[test]
    fn an_untouched_file_is_copied_by_the_service_and_its_grown_end_is_sent() {
        let grid = Grid::new(BS);
        let steps = commit(&grid, 350, Some(200), &[], |_| Known::Untouched);
        assert_eq!(
            steps,
            vec![
                Step::CopyFromBase { start: 0, len: 100 },
                Step::CopyFromBase {
                    start: 100,
                    len: 100
                },
                Step::FromLocal {
                    start: 200,
                    len: 100
                },
                Step::FromLocal {
                    start: 300,
                    len: 50
                },
            ]
        );
    }

    #[test]
    fn known_ids_are_reused_and_uploads_awaited() {
        let grid = Grid::new(BS);
        let committed = vec![id(0), id(1), id(2)];
        let steps = commit(&grid, 300, Some(300), &committed, |i| match i {
            1 => Known::Uploading("up".into()),
            2 => Known::Staged("st".into()),
            _ => Known::Untouched,
        });
        assert_eq!(
            steps,
            vec![
                Step::Reuse(id(0)),
                Step::Await("up".into()),
                Step::Staged("st".into()),
            ]
        );
    }

    #[test]
    fn empty_files_and_small_files_written_here_are_sent_whole() {
        let grid = Grid::new(BS);
        assert!(sent_whole(&grid, 0, false));
        assert!(sent_whole(&grid, 1, true));
        assert!(sent_whole(&grid, BS, true));
        // Not written here (only its metadata changed): the service copies its bytes.
        assert!(!sent_whole(&grid, BS, false));
        // Two blocks: blocks and a block list (the first may be uploading already).
        assert!(!sent_whole(&grid, BS + 1, true));
        // One large block: as a block, not read into memory whole.
        let large = Grid::new(64 << 20);
        assert!(sent_whole(&large, WHOLE_MAX, true));
        assert!(!sent_whole(&large, WHOLE_MAX + 1, true));
    }

    #[test]
    fn old_ids_are_wanted_only_when_something_untouched_lies_in_the_old_version() {
        let grid = Grid::new(BS);
        assert!(wants_old_ids(&grid, 300, 300, &[], |i| i != 1));
        assert!(!wants_old_ids(&grid, 300, 300, &[], |_| true));
        assert!(!wants_old_ids(&grid, 300, 300, &[id(0)], |_| false));
        // Untouched, but past the old version (a hole): nothing to reuse there.
        assert!(!wants_old_ids(&grid, 300, 100, &[], |i| i == 0));
    }

    #[test]
    fn a_sibling_sends_local_blocks_and_copies_the_rest() {
        let grid = Grid::new(BS);
        let steps = sibling(&grid, 250, Some(250), |i| i == 1);
        assert_eq!(
            steps,
            vec![
                Step::CopyFromBase { start: 0, len: 100 },
                Step::FromLocal {
                    start: 100,
                    len: 100
                },
                Step::CopyFromBase {
                    start: 200,
                    len: 50
                },
            ]
        );
        assert!(sibling(&grid, 0, None, |_| false).is_empty());
    }

    fn known_strategy() -> impl Strategy<Value = Known> {
        prop_oneof![
            Just(Known::Untouched),
            "[a-z]{4}".prop_map(Known::Uploading),
            "[a-z]{4}".prop_map(Known::Staged),
        ]
    }

    proptest! {
        /// Whatever the blocks' states: one step per block, in order; what is sent covers
        /// exactly its block; copies never reach past the old version; ids come from where
        /// they are known, and a touched block is never committed with an old id.
        #[test]
        fn the_plan_tiles_the_file_and_never_reads_past_the_old_version(
            size in 0u64..2_000,
            base_len in proptest::option::of(0u64..2_000),
            states in proptest::collection::vec(known_strategy(), 20),
            reuse in 0usize..21,
        ) {
            let grid = Grid::new(BS);
            let base_len = base_len.map(|b| b.min(size));
            let committed: Vec<String> = (0..reuse as u64).map(id).collect();
            let known = |i: u64| states[i as usize].clone();
            let steps = commit(&grid, size, base_len, &committed, known);
            prop_assert_eq!(steps.len() as u64, grid.count(size));
            for (i, step) in steps.iter().enumerate() {
                let i = i as u64;
                if let Some((start, len)) = range_of(step) {
                    prop_assert_eq!((start, len), grid.range(i, size));
                }
                match (step, &states[i as usize]) {
                    (Step::Await(a), Known::Uploading(b)) | (Step::Staged(a), Known::Staged(b)) => {
                        prop_assert_eq!(a, b)
                    }
                    (Step::Reuse(a), Known::Untouched) => prop_assert_eq!(a, &committed[i as usize]),
                    (Step::CopyFromBase { start, len }, Known::Untouched) => {
                        prop_assert!(start + len <= base_len.unwrap());
                        prop_assert!(committed.get(i as usize).is_none());
                    }
                    (Step::FromLocal { .. }, Known::Untouched) => {
                        prop_assert!(committed.get(i as usize).is_none())
                    }
                    (step, state) => prop_assert!(false, "{:?} for {:?}", step, state),
                }
            }
            let local = |i: u64| matches!(states[i as usize], Known::Staged(_));
            let copy = sibling(&grid, size, base_len, local);
            prop_assert_eq!(copy.len() as u64, grid.count(size));
            for (i, step) in copy.iter().enumerate() {
                let (start, len) = range_of(step).expect("a sibling sends every block");
                prop_assert_eq!((start, len), grid.range(i as u64, size));
                if matches!(step, Step::CopyFromBase { .. }) {
                    prop_assert!(!local(i as u64) && start + len <= base_len.unwrap());
                }
            }
        }
    }
}
