//! One page of a list an actor holds, with the size of the whole: what every paged list
//! endpoint answers (`limit`, `offset`, `total`).

/// `items`: the page; `total`: every item the filter kept, before paging.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: usize,
}

impl<T> Page<T> {
    /// Skips `offset` items of `items`, keeps at most `limit`, and counts them all; only
    /// the page is collected.
    pub fn of(items: impl Iterator<Item = T>, offset: usize, limit: usize) -> Self {
        let mut page = Page {
            items: Vec::new(),
            total: 0,
        };
        for (i, item) in items.enumerate() {
            page.total += 1;
            if i >= offset && page.items.len() < limit {
                page.items.push(item);
            }
        }
        page
    }

    /// The same page with every item mapped (a borrowed list's page, cloned).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn a_page_skips_offset_keeps_limit_and_counts_the_whole() {
        let page = Page::of([1, 2, 3, 4].iter(), 1, 2).map(|x| x * 10);
        assert_eq!((page.items, page.total), (vec![20, 30], 4));
        let page = Page::of(1..3, 5, 10);
        assert_eq!((page.items, page.total), (vec![], 2));
    }
}
