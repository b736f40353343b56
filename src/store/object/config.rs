//! How to reach an object store: the job's `s3` options (which name
//! environment variables, never hold a secret) resolved against the
//! environment and the shared credentials file, the way the AWS tools
//! resolve them.
//!
//! Order, first found wins:
//! - endpoint: `s3.endpoint`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`,
//!   `AWS_ENDPOINT`; none: AWS itself;
//! - region: `s3.region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1`;
//! - path-style requests: `s3.path_style`; default on with an endpoint (what
//!   MinIO, Ceph and Garage want), off for AWS;
//! - credentials: the variables `s3.access_key_id_env` and
//!   `s3.secret_access_key_env` name (and `s3.session_token_env`), else
//!   `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`,
//!   else the profile `s3.profile` (or `AWS_PROFILE`, or `default`) of
//!   `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, else a web
//!   identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as on
//!   Kubernetes). No credentials at all is an error: strata never falls
//!   back to probing an instance-metadata address.
//!
//! This is the one place that reads the environment for object stores:
//! it runs when a destination is opened, as credentials may rotate between
//! the runs of a daemon.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How to reach the object store of an `s3://` destination. Secrets are
/// never written here: the credential fields name environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectOptions {
    /// The server's URL, `http(s)://HOST[:PORT]`, for an S3-compatible
    /// store (MinIO, Ceph RGW, Garage, R2, B2). Absent: `AWS_ENDPOINT_URL`,
    /// else AWS itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^https?://[^\s/?#]+/?$"),
        example = "http://127.0.0.1:9000"
    )]
    pub endpoint: Option<String>,
    /// The region. Absent: `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), example = "eu-central-1")]
    pub region: Option<String>,
    /// Path-style requests (`http://HOST/BUCKET/KEY`) rather than
    /// virtual-hosted ones. Default: on when an endpoint is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = true)]
    pub path_style: Option<bool>,
    /// The name of the environment variable holding the access key id
    /// (default `AWS_ACCESS_KEY_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), example = &"BACKUP_S3_KEY_ID")]
    pub access_key_id_env: Option<String>,
    /// The name of the environment variable holding the secret access key
    /// (default `AWS_SECRET_ACCESS_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), example = &"BACKUP_S3_SECRET")]
    pub secret_access_key_env: Option<String>,
    /// The name of the environment variable holding a session token, if any
    /// (default `AWS_SESSION_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), example = &"BACKUP_S3_TOKEN")]
    pub session_token_env: Option<String>,
    /// The profile of the shared credentials file (`~/.aws/credentials`)
    /// to use when no variable holds credentials (default `AWS_PROFILE`,
    /// else `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), example = &"backup")]
    pub profile: Option<String>,
}

/// Credentials, resolved.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A key pair (and a session token).
    Static {
        /// The access key id.
        key_id: String,
        /// The secret.
        secret: String,
        /// A session token.
        token: Option<String>,
    },
    /// A web identity token file and role (`AWS_WEB_IDENTITY_TOKEN_FILE`):
    /// the client exchanges it itself.
    WebIdentity,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Static { key_id, .. } => write!(f, "Static({key_id}, secret hidden)"),
            Credentials::WebIdentity => write!(f, "WebIdentity"),
        }
    }
}

/// Everything needed to connect.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The endpoint (`None`: AWS).
    pub endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// Path-style requests.
    pub path_style: bool,
    /// The credentials.
    pub credentials: Credentials,
}

impl Connection {
    /// The endpoint as messages name it.
    pub fn endpoint_text(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("AWS S3 ({})", self.region),
        }
    }
}

/// Something a variable lookup returns: the process environment in use,
/// a map in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Resolve the options against `env`.
pub fn resolve(options: &ObjectOptions, env: Env<'_>) -> Result<Connection, String> {
    let endpoint = options
        .endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| env("AWS_ENDPOINT"))
        .map(|e| e.trim_end_matches('/').to_string());
    if let Some(e) = &endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(format!("endpoint {e:?} is not an http:// or https:// URL"));
    }
    let region = options
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let path_style = options.path_style.unwrap_or(endpoint.is_some());
    let credentials = credentials(options, env)?;
    Ok(Connection {
        endpoint,
        region,
        path_style,
        credentials,
    })
}

fn credentials(options: &ObjectOptions, env: Env<'_>) -> Result<Credentials, String> {
    let named = |field: &str, var: &Option<String>| -> Result<Option<String>, String> {
        match var {
            None => Ok(None),
            Some(name) => env(name)
                .map(Some)
                .ok_or_else(|| format!("s3.{field} names ${name}, which is not set")),
        }
    };
    let key = named("access_key_id_env", &options.access_key_id_env)?;
    let secret = named("secret_access_key_env", &options.secret_access_key_env)?;
    let token = named("session_token_env", &options.session_token_env)?;
    if key.is_some() || secret.is_some() {
        return match (key, secret) {
            (Some(key_id), Some(secret)) => Ok(Credentials::Static {
                key_id,
                secret,
                token,
            }),
            _ => Err("s3: access_key_id_env and secret_access_key_env go together".into()),
        };
    }
    if let (Some(key_id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials::Static {
            key_id,
            secret,
            token: token.or_else(|| env("AWS_SESSION_TOKEN")),
        });
    }
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
    let profile = options
        .profile
        .clone()
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    if let Some(file) = &file
        && let Ok(text) = std::fs::read_to_string(file)
    {
        if let Some(c) = from_credentials_file(&text, &profile) {
            return Ok(c);
        }
        if options.profile.is_some() {
            return Err(format!(
                "{}: no profile [{profile}] with aws_access_key_id and aws_secret_access_key",
                file.display()
            ));
        }
    }
    if env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() && env("AWS_ROLE_ARN").is_some() {
        return Ok(Credentials::WebIdentity);
    }
    Err(format!(
        "no credentials for the object store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
         or the job's s3.access_key_id_env and s3.secret_access_key_env, or a [{profile}] \
         profile in {}",
        file.map_or("~/.aws/credentials".into(), |f| f.display().to_string())
    ))
}

/// The key pair of `profile` in the INI text of a shared credentials file.
fn from_credentials_file(text: &str, profile: &str) -> Option<Credentials> {
    let mut section = String::new();
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key_id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials::Static {
        key_id: key_id?,
        secret: secret?,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn credentials_come_from_named_variables_then_aws_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[backup]\n\
             aws_access_key_id=B\naws_secret_access_key=BS\naws_session_token=BT\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let vars = env_of(&[
            ("MY_KEY", "K"),
            ("MY_SECRET", "S"),
            ("AWS_ACCESS_KEY_ID", "A"),
            ("AWS_SECRET_ACCESS_KEY", "AS"),
            ("AWS_SHARED_CREDENTIALS_FILE", f),
        ]);
        let env = |k: &str| vars.get(k).cloned();
        let named = ObjectOptions {
            access_key_id_env: Some("MY_KEY".into()),
            secret_access_key_env: Some("MY_SECRET".into()),
            ..ObjectOptions::default()
        };
        let c = resolve(&named, &env).unwrap();
        assert_eq!(
            c.credentials,
            Credentials::Static {
                key_id: "K".into(),
                secret: "S".into(),
                token: None
            }
        );
        let c = resolve(&ObjectOptions::default(), &env).unwrap();
        assert!(matches!(c.credentials, Credentials::Static { ref key_id, .. } if key_id == "A"));
        assert!(!c.path_style && c.endpoint.is_none() && c.region == "us-east-1");

        let file_only = env_of(&[
            ("AWS_SHARED_CREDENTIALS_FILE", f),
            ("AWS_PROFILE", "backup"),
        ]);
        let env = |k: &str| file_only.get(k).cloned();
        let c = resolve(
            &ObjectOptions {
                endpoint: Some("http://127.0.0.1:9000/".into()),
                ..ObjectOptions::default()
            },
            &env,
        )
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(c.path_style);
        assert_eq!(
            c.credentials,
            Credentials::Static {
                key_id: "B".into(),
                secret: "BS".into(),
                token: Some("BT".into())
            }
        );

        let none = env_of(&[("HOME", dir.path().join("nohome").to_str().unwrap())]);
        let env = |k: &str| none.get(k).cloned();
        let e = resolve(&ObjectOptions::default(), &env).unwrap_err();
        assert!(e.contains("no credentials"), "{e}");
        let e = resolve(&named, &env).unwrap_err();
        assert!(e.contains("$MY_KEY, which is not set"), "{e}");
    }
}
