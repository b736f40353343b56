//! The URL form of a destination, `s3://BUCKET/PREFIX`, parsed and checked
//! offline (what `validate` says of it). Pure: no network, no environment.

use std::fmt;

/// Where an object-store destination is: a bucket and a key prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without a leading or trailing `/` (empty: the
    /// bucket's root).
    pub prefix: String,
}

/// Whether a destination is written in the URL form (`s3://…`, or any
/// `SCHEME://`): such a destination is not a path.
pub fn is_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+')
    })
}

impl ObjectUrl {
    /// Parse `s3://BUCKET[/PREFIX]`. The bucket follows S3's naming rules
    /// (3-63 lowercase letters, digits, `.` and `-`, starting and ending
    /// with a letter or digit); the prefix's segments are not empty, `.`
    /// or `..`.
    pub fn parse(text: &str) -> Result<ObjectUrl, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err("is not an s3://BUCKET/PREFIX URL".into());
        };
        if scheme != "s3" {
            return Err(format!(
                "the scheme {scheme}:// is not supported: an object-store destination is \
                 s3://BUCKET/PREFIX (any S3-compatible server, named by the job's s3.endpoint)"
            ));
        }
        if rest.contains(['?', '#']) {
            return Err("an s3:// destination has no query or fragment (?, #)".into());
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            for segment in prefix.split('/') {
                match segment {
                    "" => return Err(format!("the prefix {prefix:?} has an empty segment (//)")),
                    "." | ".." => {
                        return Err(format!("the prefix {prefix:?} has a {segment:?} segment"));
                    }
                    s if s.chars().any(char::is_control) => {
                        return Err(format!("the prefix {prefix:?} holds a control character"));
                    }
                    _ => {}
                }
            }
        }
        Ok(ObjectUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("names no bucket (s3://BUCKET/PREFIX)".into());
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!(
            "bucket {bucket:?}: a bucket name is 3 to 63 characters long"
        ));
    }
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-';
    let ends = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = bucket.as_bytes();
    if !bytes.iter().all(|&b| ok_char(b)) || !ends(bytes[0]) || !ends(bytes[bytes.len() - 1]) {
        return Err(format!(
            "bucket {bucket:?}: a bucket name is lowercase letters, digits, '.' and '-', \
             starting and ending with a letter or digit"
        ));
    }
    if bucket.contains("..") {
        return Err(format!("bucket {bucket:?}: a bucket name has no \"..\""));
    }
    Ok(())
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_why() {
        let u = ObjectUrl::parse("s3://my-bucket/backups/home/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("my-bucket", "backups/home")
        );
        assert_eq!(u.to_string(), "s3://my-bucket/backups/home");
        let root = ObjectUrl::parse("s3://bkt").unwrap();
        assert_eq!(root.prefix, "");
        for (bad, why) in [
            ("gs://b/p", "not supported"),
            ("s3:///p", "names no bucket"),
            ("s3://ABC/p", "lowercase"),
            ("s3://ab/p", "3 to 63"),
            ("s3://-ab/p", "starting and ending"),
            ("s3://bkt/a//b", "empty segment"),
            ("s3://bkt/a/../b", "\"..\" segment"),
            ("s3://bkt/a?x=1", "no query"),
            ("/mnt/backup", "not an s3://"),
        ] {
            let e = ObjectUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(
            is_url("s3://b/p")
                && is_url("gs://x")
                && !is_url("/mnt/a")
                && !is_url("a://"[..1].as_ref())
        );
    }
}
