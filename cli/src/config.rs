//! Where the client commands talk to, and as whom: the one place the
//! command line, the environment and a profile of the config file become a
//! [`Target`].
//!
//! Each setting is taken from the first of: its option (`--server`), its
//! variable (`FLOTILLA_URL`), the profile in use, the built-in default. The
//! way a request proves who sends it (`--token`, `--token-file`, `--auth`) is
//! taken as a whole from the first of those that says anything about it, so
//! a `--token` given on the command line is never mixed with a profile's
//! `auth = "iam"`.
//!
//! The config file is `$XDG_CONFIG_HOME/flotilla/config.toml`, else
//! `~/.config/flotilla/config.toml`, or the one `--config`
//! (`FLOTILLA_CONFIG`) names:
//!
//! ```toml
//! default_profile = "local"
//!
//! [profiles.local]
//! server = "http://127.0.0.1:5000"
//! token_file = "~/work/.flotilla/tokens"
//!
//! [profiles.prod]
//! server = "https://abc123.execute-api.us-east-1.amazonaws.com"
//! auth = "iam"
//! aws_profile = "data-science"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::client::{CliError, DEFAULT_SERVER};

/// How requests prove who sends them, as a user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// No credentials (`flotilla serve` on loopback without a token file).
    None,
    /// A bearer token: `token`, or the first of `token_file`'s.
    Token,
    /// AWS SigV4 with the AWS credential chain, for a stack deployed with
    /// `ApiAuth=IAM`.
    Iam,
}

/// The config file: profiles by name, and the one used when none is named.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The profile used when neither `--profile` nor `FLOTILLA_PROFILE`
    /// names one; without it, a profile named `default` if there is one.
    pub default_profile: Option<String>,
    /// The profiles.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One server and how to reach it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The API's URL.
    pub server: Option<String>,
    /// How requests are authenticated; `token` when `token` or
    /// `token_file` is set, else `none`.
    pub auth: Option<AuthKind>,
    /// A bearer token.
    pub token: Option<String>,
    /// A token file (`<token> <user> [admin]` lines); a relative path is
    /// read from the config file's directory, `~/` from the home directory.
    pub token_file: Option<PathBuf>,
    /// The region requests are signed for (`auth = "iam"`); else the one
    /// in an `execute-api` URL, else the AWS chain's.
    pub region: Option<String>,
    /// The AWS profile whose credentials sign requests (`auth = "iam"`).
    pub aws_profile: Option<String>,
    /// Who owns the runs launched through this profile, when no token
    /// names the caller.
    pub owner: Option<String>,
}

/// What the command line and the environment said (clap merges the two).
#[derive(Debug, Default, Clone)]
pub struct Given {
    /// `--config` / `FLOTILLA_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--profile` / `FLOTILLA_PROFILE`.
    pub profile: Option<String>,
    /// `--server` / `FLOTILLA_URL`, and the rest as a profile would say them.
    pub settings: Profile,
}

/// How requests are authenticated, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChoice {
    /// None.
    None,
    /// `Authorization: Bearer` with this token.
    Bearer(String),
    /// SigV4 for `execute-api`.
    Iam {
        /// The region, when known before the AWS chain is asked.
        region: Option<String>,
        /// The AWS profile, when not the chain's default.
        aws_profile: Option<String>,
    },
}

/// Where the commands talk to, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The API's URL.
    pub server: String,
    /// How requests are authenticated.
    pub auth: AuthChoice,
    /// The owner of launched runs when no token names the caller.
    pub owner: Option<String>,
    /// The profile in use, if any, and the file it came from.
    pub profile: Option<(String, PathBuf)>,
}

/// The config file used when `--config` names none, if a home is known.
pub fn default_path(xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    match (xdg_config_home.filter(|d| !d.is_empty()), home) {
        (Some(dir), _) => Some(Path::new(dir).join("flotilla").join("config.toml")),
        (None, Some(home)) if !home.is_empty() => Some(
            Path::new(home)
                .join(".config")
                .join("flotilla")
                .join("config.toml"),
        ),
        _ => None,
    }
}

/// Reads the config file at `path`; `None` when it does not exist and was
/// not named (`required` is false).
pub fn read(path: &Path, required: bool) -> Result<Option<ConfigFile>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )));
        }
    };
    parse(&text, path).map(Some)
}

/// Parses a config file's text (`path` only names it in messages).
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, CliError> {
    toml::from_str(text).map_err(|e| {
        CliError::Usage(format!(
            "the config file {} is not valid: {}",
            path.display(),
            e.to_string().trim_end()
        ))
    })
}

/// `path` with `~/` read from `home`, and a relative one from `base`.
fn expand(path: &Path, base: &Path, home: Option<&str>) -> PathBuf {
    if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), home) {
        return Path::new(home).join(rest);
    }
    if path.is_relative() {
        base.join(path)
    } else {
        path.to_owned()
    }
}

fn says_auth(p: &Profile) -> bool {
    p.auth.is_some() || p.token.is_some() || p.token_file.is_some()
}

/// Resolves `given` over the profile of `file` (read from `path`) it
/// names; `home` expands `~/` in a profile's token file.
pub fn resolve(
    given: Given,
    file: Option<(&Path, ConfigFile)>,
    home: Option<&str>,
) -> Result<Target, CliError> {
    let named = given.profile.clone().filter(|p| !p.trim().is_empty());
    let (profile, used) = match (&file, named) {
        (None, Some(name)) => {
            return Err(CliError::Usage(format!(
                "there is no profile {name:?}: no config file was found{}",
                given
                    .config
                    .as_ref()
                    .map(|p| format!(" at {}", p.display()))
                    .unwrap_or_default()
            )));
        }
        (None, None) => (Profile::default(), None),
        (Some((path, config)), named) => {
            let chosen = named.clone().or_else(|| config.default_profile.clone());
            let chosen = chosen.or_else(|| {
                config
                    .profiles
                    .contains_key("default")
                    .then(|| "default".to_owned())
            });
            match chosen {
                None => (Profile::default(), None),
                Some(name) => match config.profiles.get(&name) {
                    Some(profile) => {
                        let mut profile = profile.clone();
                        let base = path.parent().unwrap_or(Path::new("."));
                        profile.token_file = profile.token_file.map(|f| expand(&f, base, home));
                        (profile, Some((name, path.to_path_buf())))
                    }
                    None => {
                        let known: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
                        let from = if named.is_some() {
                            "is named"
                        } else {
                            "is the default_profile"
                        };
                        return Err(CliError::Usage(format!(
                            "profile {name:?} {from} but {} has {}",
                            path.display(),
                            if known.is_empty() {
                                "no profiles".to_owned()
                            } else {
                                format!("only {}", known.join(", "))
                            }
                        )));
                    }
                },
            }
        }
    };
    let settings = given.settings;
    let auth_from = if says_auth(&settings) {
        &settings
    } else {
        &profile
    };
    let region = settings.region.clone().or_else(|| profile.region.clone());
    let aws_profile = settings
        .aws_profile
        .clone()
        .or_else(|| profile.aws_profile.clone());
    let kind = auth_from.auth.unwrap_or(
        if auth_from.token.is_some() || auth_from.token_file.is_some() {
            AuthKind::Token
        } else {
            AuthKind::None
        },
    );
    let auth = match kind {
        AuthKind::None => AuthChoice::None,
        AuthKind::Iam => AuthChoice::Iam {
            region,
            aws_profile,
        },
        AuthKind::Token => AuthChoice::Bearer(token(
            auth_from.token.clone(),
            auth_from.token_file.as_deref(),
        )?),
    };
    Ok(Target {
        server: settings
            .server
            .or(profile.server)
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
        auth,
        owner: settings
            .owner
            .or(profile.owner)
            .filter(|o| !o.trim().is_empty()),
        profile: used,
    })
}

/// The token given, else the first token of `token_file` (a `flotilla
/// serve --auth-token-file` file: `<token> <user> [admin]` per line).
fn token(token: Option<String>, token_file: Option<&Path>) -> Result<String, CliError> {
    if let Some(token) = token.filter(|t| !t.trim().is_empty()) {
        return Ok(token.trim().to_owned());
    }
    let Some(path) = token_file else {
        return Err(CliError::Usage(
            "auth is \"token\" but no token is given: give --token, FLOTILLA_TOKEN or --token-file"
                .into(),
        ));
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "the token file {} holds no token (a line is `<token> <user> [admin]`)",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
default_profile = "local"

[profiles.local]
server = "http://127.0.0.1:5000"
token = "local-token"
owner = "ana"

[profiles.prod]
server = "https://abc123.execute-api.eu-west-1.amazonaws.com"
auth = "iam"
aws_profile = "ml"

[profiles.relative]
server = "http://10.1.2.3:5000"
token_file = "tokens"
"#;

    fn file() -> (&'static Path, ConfigFile) {
        let path = Path::new("/etc/flotilla/config.toml");
        (path, parse(FILE, path).unwrap())
    }

    fn given(profile: Option<&str>, settings: Profile) -> Given {
        Given {
            config: None,
            profile: profile.map(str::to_owned),
            settings,
        }
    }

    #[test]
    fn without_a_config_file_or_options_the_local_server_is_used_without_credentials() {
        let target = resolve(Given::default(), None, None).unwrap();
        assert_eq!(target.server, DEFAULT_SERVER);
        assert_eq!(target.auth, AuthChoice::None);
        assert_eq!(target.profile, None);
    }

    #[test]
    fn the_default_profile_is_used_when_none_is_named_and_a_named_one_replaces_it() {
        let target = resolve(Given::default(), Some(file()), None).unwrap();
        assert_eq!(target.server, "http://127.0.0.1:5000");
        assert_eq!(target.auth, AuthChoice::Bearer("local-token".into()));
        assert_eq!(target.owner.as_deref(), Some("ana"));

        let target = resolve(given(Some("prod"), Profile::default()), Some(file()), None).unwrap();
        assert_eq!(
            target.server,
            "https://abc123.execute-api.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            target.auth,
            AuthChoice::Iam {
                region: None,
                aws_profile: Some("ml".into())
            }
        );
        assert_eq!(target.owner, None);
    }

    #[test]
    fn an_option_beats_the_profile_and_credentials_given_replace_the_profiles_whole() {
        let settings = Profile {
            server: Some("http://127.0.0.1:9999".into()),
            token: Some("mine".into()),
            ..Profile::default()
        };
        let target = resolve(given(Some("prod"), settings), Some(file()), None).unwrap();
        assert_eq!(target.server, "http://127.0.0.1:9999");
        assert_eq!(target.auth, AuthChoice::Bearer("mine".into()));

        // A region given alone keeps the profile's way of signing.
        let settings = Profile {
            region: Some("us-west-2".into()),
            ..Profile::default()
        };
        let target = resolve(given(Some("prod"), settings), Some(file()), None).unwrap();
        assert_eq!(
            target.auth,
            AuthChoice::Iam {
                region: Some("us-west-2".into()),
                aws_profile: Some("ml".into())
            }
        );
    }

    #[test]
    fn an_unknown_profile_is_refused_naming_the_profiles_there_are() {
        let e = resolve(
            given(Some("staging"), Profile::default()),
            Some(file()),
            None,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "profile \"staging\" is named but /etc/flotilla/config.toml has only local, prod, relative"
        );
        let e = resolve(given(Some("prod"), Profile::default()), None, None).unwrap_err();
        assert!(e.to_string().contains("no config file was found"), "{e}");
    }

    #[test]
    fn a_profiles_token_file_is_read_from_the_config_files_directory_or_the_home() {
        let dir = std::env::temp_dir().join(format!("flotilla-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokens"), "# tokens\n\nt0k3n ana admin\n").unwrap();
        let path = dir.join("config.toml");
        let config = parse(FILE, &path).unwrap();
        let target = resolve(
            given(Some("relative"), Profile::default()),
            Some((&path, config)),
            None,
        )
        .unwrap();
        assert_eq!(target.auth, AuthChoice::Bearer("t0k3n".into()));
        assert_eq!(
            expand(Path::new("~/a/tokens"), &dir, Some("/home/ana")),
            Path::new("/home/ana/a/tokens")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_misspelt_key_or_auth_is_refused_with_where_it_is() {
        let path = Path::new("c.toml");
        let e = parse("[profiles.a]\nsever = \"x\"\n", path).unwrap_err();
        assert!(e.to_string().contains("unknown field `sever`"), "{e}");
        assert!(e.to_string().contains("c.toml"), "{e}");
        let e = parse("[profiles.a]\nauth = \"sigv4\"\n", path).unwrap_err();
        assert!(e.to_string().contains("unknown variant `sigv4`"), "{e}");
    }

    #[test]
    fn the_config_file_lives_under_xdg_config_home_else_the_homes_dot_config() {
        assert_eq!(
            default_path(Some("/x"), Some("/home/ana")),
            Some(PathBuf::from("/x/flotilla/config.toml"))
        );
        assert_eq!(
            default_path(Some(""), Some("/home/ana")),
            Some(PathBuf::from("/home/ana/.config/flotilla/config.toml"))
        );
        assert_eq!(default_path(None, None), None);
    }
}
