//! Keyset page cutting: a list reads one row more than the page holds; the
//! extra row says whether another page exists, and the last row kept is the
//! cursor of the next page.

/// Cuts `rows` (fetched with `limit + 1`) to a page of `limit` and, when the
/// extra row showed there is more, the cursor of the page's last row.
pub fn page_of<T, C>(
    mut rows: Vec<T>,
    limit: u32,
    cursor: impl FnOnce(&T) -> C,
) -> (Vec<T>, Option<C>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(cursor) } else { None };
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_only_when_more() {
        assert_eq!(page_of(vec![1, 2, 3], 2, |r| *r), (vec![1, 2], Some(2)));
        assert_eq!(page_of(vec![1, 2], 2, |r| *r), (vec![1, 2], None));
        assert_eq!(page_of(Vec::<u8>::new(), 2, |r| *r), (vec![], None));
    }
}
