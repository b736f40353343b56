//! Shared by the fuzz targets: expand repeat directives, so that short
//! inputs reach the long and deeply repeated patterns that blow up regex
//! compilation (a 500,000-character rule, `{a,{a,…}}`, `[[[[`, `**/**/…`,
//! 100,000 alternatives), which byte-level mutation alone rarely builds.
//!
//! `@@N@@UNIT@@` becomes UNIT repeated N times (N up to 1,000,000); with
//! `@@N@@OPEN@@CLOSE@@`, OPEN N times then CLOSE N times (nesting).

/// The most repetitions of one directive.
const MAX_COUNT: usize = 1_000_000;

/// `text` with every directive expanded; text without one is unchanged.
pub fn expand(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("@@") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match directive(after) {
            Some((expanded, used)) => {
                out.push_str(&expanded);
                rest = &after[used..];
            }
            None => {
                out.push_str("@@");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parse `N@@OPEN@@[CLOSE@@]` at the start of `s`; the expansion and the
/// bytes consumed.
fn directive(s: &str) -> Option<(String, usize)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let count: usize = s[..digits].parse().ok()?;
    let count = count.min(MAX_COUNT);
    let body = s[digits..].strip_prefix("@@")?;
    let open_end = body.find("@@")?;
    let open = &body[..open_end];
    let after_open = &body[open_end + 2..];
    let mut used = digits + 2 + open_end + 2;
    let mut expanded = open.repeat(count);
    // A CLOSE part is text up to a third `@@` on the same line.
    if let Some(close_end) = after_open.find("@@")
        && !after_open[..close_end].contains('\n')
    {
        expanded.push_str(&after_open[..close_end].repeat(count));
        used += close_end + 2;
    }
    Some((expanded, used))
}
