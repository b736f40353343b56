//! JSON pointer -> line and column in the file's text.
//!
//! serde_json's `Value` forgets positions, and the schema validator reports a
//! JSON pointer. To print `FILE:LINE:COL`, this walks the original text along
//! the pointer, skipping the values it does not descend into. It only runs for
//! files that have a problem, so it favours being small over being fast.

/// A position in a file, 1-based; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position { line, column }
    }
}

/// Where the value at `pointer` starts, and where its member key starts when
/// the value is an object member. `None` if the text does not hold the path
/// (then the caller falls back to the nearest ancestor).
pub fn locate(text: &str, pointer: &str) -> Option<(Position, Option<Position>)> {
    let segments: Vec<String> = if pointer.is_empty() {
        Vec::new()
    } else {
        pointer
            .strip_prefix('/')?
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect()
    };
    let bytes = text.as_bytes();
    let mut pos = skip_ws(bytes, 0);
    let mut key_pos = None;
    for segment in &segments {
        match bytes.get(pos)? {
            b'{' => {
                let (value, key) = find_member(text, pos, segment)?;
                pos = value;
                key_pos = Some(key);
            }
            b'[' => {
                let index: usize = segment.parse().ok()?;
                pos = find_element(bytes, pos, index)?;
                key_pos = None;
            }
            _ => return None,
        }
    }
    Some((
        Position::of_offset(text, pos),
        key_pos.map(|k| Position::of_offset(text, k)),
    ))
}

/// Like [`locate`], but falls back to the nearest ancestor that exists and
/// to the start of the file. Returns the key position for object members
/// when `prefer_key` is set.
pub fn locate_or_ancestor(text: &str, pointer: &str, prefer_key: bool) -> Position {
    let mut pointer = pointer;
    loop {
        if let Some((value, key)) = locate(text, pointer) {
            return match (prefer_key, key) {
                (true, Some(key)) => key,
                _ => value,
            };
        }
        match pointer.rfind('/') {
            Some(i) => pointer = &pointer[..i],
            None => return Position { line: 1, column: 1 },
        }
    }
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// End of the string starting at `pos` (which holds `"`), past the quote.
fn skip_string(bytes: &[u8], mut pos: usize) -> Option<usize> {
    pos += 1;
    while pos < bytes.len() {
        match bytes[pos] {
            b'\\' => pos += 2,
            b'"' => return Some(pos + 1),
            _ => pos += 1,
        }
    }
    None
}

/// End of the value starting at `pos`.
fn skip_value(bytes: &[u8], pos: usize) -> Option<usize> {
    match bytes.get(pos)? {
        b'"' => skip_string(bytes, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut p = pos;
            while p < bytes.len() {
                match bytes[p] {
                    b'"' => {
                        p = skip_string(bytes, p)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(p + 1);
                        }
                    }
                    _ => {}
                }
                p += 1;
            }
            None
        }
        _ => {
            let mut p = pos;
            while p < bytes.len() && !matches!(bytes[p], b',' | b'}' | b']') {
                p += 1;
            }
            Some(p)
        }
    }
}

/// In the object at `pos`, the value and key offsets of member `name`.
fn find_member(text: &str, pos: usize, name: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut p = skip_ws(bytes, pos + 1);
    while bytes.get(p)? == &b'"' {
        let key_start = p;
        let key_end = skip_string(bytes, p)?;
        let key: String = serde_json::from_str(&text[key_start..key_end]).ok()?;
        p = skip_ws(bytes, key_end);
        if bytes.get(p)? != &b':' {
            return None;
        }
        p = skip_ws(bytes, p + 1);
        if key == name {
            return Some((p, key_start));
        }
        p = skip_ws(bytes, skip_value(bytes, p)?);
        if bytes.get(p)? == &b',' {
            p = skip_ws(bytes, p + 1);
        }
    }
    None
}

/// In the array at `pos`, the offset of element `index`.
fn find_element(bytes: &[u8], pos: usize, index: usize) -> Option<usize> {
    let mut p = skip_ws(bytes, pos + 1);
    for _ in 0..index {
        if bytes.get(p)? == &b']' {
            return None;
        }
        p = skip_ws(bytes, skip_value(bytes, p)?);
        if bytes.get(p)? != &b',' {
            return None;
        }
        p = skip_ws(bytes, p + 1);
    }
    (bytes.get(p)? != &b']').then_some(p)
}

/// A key given twice in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// JSON pointer of the member (the object's pointer and the key).
    pub pointer: String,
    /// The key.
    pub key: String,
    /// Where the first occurrence of the key starts.
    pub first: Position,
    /// Where the repeated key starts.
    pub again: Position,
}

/// Every key that an object of `text` gives more than once. serde_json,
/// like most parsers, keeps the last value silently; a job file that sets
/// `source` twice must not back up whichever came last. `text` must be
/// valid JSON (call this after parsing it), whose nesting serde_json
/// limits to 128 levels, which bounds the recursion here.
pub fn duplicate_keys(text: &str) -> Vec<Duplicate> {
    let mut out = Vec::new();
    let start = skip_ws(text.as_bytes(), 0);
    scan_duplicates(text, start, "", &mut out);
    out
}

/// Scan the value at `pos` (its pointer `pointer`) for duplicate keys;
/// returns the offset after it.
fn scan_duplicates(text: &str, pos: usize, pointer: &str, out: &mut Vec<Duplicate>) -> usize {
    let bytes = text.as_bytes();
    match bytes.get(pos) {
        Some(b'{') => {
            let mut seen: std::collections::HashMap<String, usize> = Default::default();
            let mut p = skip_ws(bytes, pos + 1);
            while bytes.get(p) == Some(&b'"') {
                let key_start = p;
                let Some(key_end) = skip_string(bytes, p) else {
                    return bytes.len();
                };
                let key: String =
                    serde_json::from_str(&text[key_start..key_end]).unwrap_or_default();
                let member = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                if let Some(&first) = seen.get(&key) {
                    out.push(Duplicate {
                        pointer: member.clone(),
                        key: key.clone(),
                        first: Position::of_offset(text, first),
                        again: Position::of_offset(text, key_start),
                    });
                } else {
                    seen.insert(key, key_start);
                }
                p = skip_ws(bytes, key_end);
                if bytes.get(p) != Some(&b':') {
                    return bytes.len();
                }
                p = skip_ws(bytes, p + 1);
                p = skip_ws(bytes, scan_duplicates(text, p, &member, out));
                if bytes.get(p) == Some(&b',') {
                    p = skip_ws(bytes, p + 1);
                }
            }
            p + 1
        }
        Some(b'[') => {
            let mut p = skip_ws(bytes, pos + 1);
            let mut index = 0usize;
            while p < bytes.len() && bytes[p] != b']' {
                p = skip_ws(
                    bytes,
                    scan_duplicates(text, p, &format!("{pointer}/{index}"), out),
                );
                if bytes.get(p) == Some(&b',') {
                    p = skip_ws(bytes, p + 1);
                } else if bytes.get(p) != Some(&b']') {
                    return bytes.len();
                }
                index += 1;
            }
            p + 1
        }
        Some(_) => skip_value(bytes, pos).unwrap_or(bytes.len()),
        None => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "{\n  \"source\": \"/data\",\n  \"track_dirs\": [\"a\", {\"x\": [1, 2]}, \"c\"],\n  \"ret\\\"x\": {\"keep_last\": \"no\"},\n  \"é\": 1, \"k\": 2\n}\n";

    fn at(pointer: &str) -> (usize, usize) {
        let (p, _) = locate(TEXT, pointer).unwrap_or_else(|| panic!("{pointer} not found"));
        (p.line, p.column)
    }

    #[test]
    fn finds_values_by_pointer() {
        assert_eq!(at(""), (1, 1));
        assert_eq!(at("/source"), (2, 13));
        assert_eq!(at("/track_dirs"), (3, 17));
        assert_eq!(at("/track_dirs/0"), (3, 18));
        assert_eq!(at("/track_dirs/2"), (3, 38));
        assert_eq!(at("/track_dirs/1/x/1"), (3, 33));
        assert_eq!(at("/ret\"x/keep_last"), (4, 27));
        assert_eq!(at("/k"), (5, 16));
    }

    #[test]
    fn member_key_position() {
        let (_, key) = locate(TEXT, "/source").unwrap();
        assert_eq!(key, Some(Position { line: 2, column: 3 }));
    }

    #[test]
    fn missing_path_falls_back_to_ancestor() {
        assert_eq!(locate(TEXT, "/nope"), None);
        assert_eq!(locate(TEXT, "/track_dirs/9"), None);
        let p = locate_or_ancestor(TEXT, "/track_dirs/9", false);
        assert_eq!((p.line, p.column), (3, 17));
    }

    #[test]
    fn duplicate_keys_at_any_depth_are_found_at_their_second_key() {
        let text = "{\"source\": \"/a\",\n \"retention\": {\"keep_last\": 1, \"keep_last\": 2},\n \"x\": [{\"k\": 1, \"k\": 2}],\n \"source\": \"/etc\"}";
        let found: Vec<String> = duplicate_keys(text)
            .into_iter()
            .map(|d| {
                format!(
                    "{} {}:{} {}:{}",
                    d.pointer, d.first.line, d.first.column, d.again.line, d.again.column
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                "/retention/keep_last 2:16 2:32",
                "/x/0/k 3:9 3:17",
                "/source 1:2 4:2"
            ]
        );
        assert!(duplicate_keys(TEXT).is_empty());
        assert!(duplicate_keys("[1, \"a\", {}, []]").is_empty());
    }
}
