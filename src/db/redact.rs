//! Removes passwords from text before it is shown, in every form the drivers
//! accept: URL userinfo (`postgres://u:secret@h`, Oracle's `u/secret@h`), URL
//! query parameters (`?password=secret`) and key=value connection strings
//! (`host=h password='se cret'`). Every message, JSON document and audit row
//! that can carry a connection string goes through [`redact`].
//!
//! In a URL's query only the values of options known to be harmless are shown:
//! any other value is masked, so a misspelled `?passwrod=` or an option the
//! drivers do not know (`?password_file=`) never shows its value. Errors about
//! unknown options name the option, never its value ([`unknown_options`]).

/// Parameter names whose value is a secret (lower case).
const SECRET_KEYS: &[&str] = &["password", "passwd", "pwd", "sslpassword", "pass"];

const MASK: &str = "***";

/// The PostgreSQL driver's options whose values may be shown (all it
/// accepts but `password`).
pub const POSTGRES_OPTIONS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// Oracle's Easy Connect Plus parameters (`host/service?name=value`).
pub const ORACLE_OPTIONS: &[&str] = &[
    "enable",
    "failover",
    "load_balance",
    "recv_buf_size",
    "send_buf_size",
    "sdu",
    "source_route",
    "retry_count",
    "retry_delay",
    "connect_timeout",
    "transport_connect_timeout",
    "expire_time",
    "ssl_server_dn_match",
    "ssl_server_cert_dn",
    "wallet_location",
    "https_proxy",
    "https_proxy_port",
    "pool_connection_class",
    "pool_purity",
    "pool_boundary",
];

/// How an option of a connection string is shown in an error: its name when
/// it looks like one (letters, digits, `_`, `-`, `.`, at most 64), else a
/// description, because text that is no name may be a value typed in the
/// wrong place.
pub fn option_name(key: &str) -> String {
    let plausible = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plausible {
        format!("`{key}`")
    } else {
        "an option whose name is not a plain word".to_string()
    }
}

/// The names of the query options of `url` (the part after `?`) that are not
/// in `known` (compared in lower case, after %XX decoding), each as
/// [`option_name`] shows it. A part with no `=` counts as unknown and is
/// never shown: it is no option, and may be a value.
pub fn unknown_options(url: &str, known: &[&str]) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let name = match part.split_once('=') {
            Some((key, _)) => {
                let key = percent_decoded(key).to_ascii_lowercase();
                if known.contains(&key.as_str()) {
                    continue;
                }
                option_name(&key)
            }
            None => "a part with no `=`".to_string(),
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The keys of a key=value connection string (`host=h password='a b'`), as
/// [`option_name`] shows them, read as libpq does: a key, `=`, then a value
/// quoted with `'` (backslash escapes) or up to white space. Reading stops at
/// the first thing that is not such a pair, so a value is never taken for a key.
pub fn key_value_names(text: &str) -> Vec<String> {
    key_value_keys(text)
        .into_iter()
        .map(|k| option_name(&k))
        .collect()
}

/// The keys of a key=value connection string, as written (see
/// [`key_value_names`]).
pub fn key_value_keys(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let Some(after) = rest[key_end..].trim_start().strip_prefix('=') else {
            break;
        };
        if key.is_empty() {
            break;
        }
        let after = after.trim_start();
        let value_len = match after.strip_prefix('\'') {
            Some(quoted) => {
                let mut escaped = false;
                let Some(close) = quoted.char_indices().find_map(|(i, c)| {
                    let end = !escaped && c == '\'';
                    escaped = !escaped && c == '\\';
                    end.then_some(i)
                }) else {
                    names.push(key.to_string());
                    break;
                };
                close + 2
            }
            None => after.find(char::is_whitespace).unwrap_or(after.len()),
        };
        names.push(key.to_string());
        rest = after[value_len..].trim_start();
    }
    names
}

/// `%XX` escapes decoded (lossy), for comparing option names.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query of a URL (`a=1&b=2`) with every value masked but those of
/// [`POSTGRES_OPTIONS`] and [`ORACLE_OPTIONS`]; a part with no `=` is masked whole.
fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|part| match part.split_once('=') {
            Some((key, value)) => {
                let key_lower = percent_decoded(key).to_ascii_lowercase();
                let shown = POSTGRES_OPTIONS.contains(&key_lower.as_str())
                    || ORACLE_OPTIONS.contains(&key_lower.as_str());
                if shown || value.is_empty() {
                    part.to_string()
                } else {
                    format!("{key}={MASK}")
                }
            }
            None if part.is_empty() => String::new(),
            None => MASK.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `text` with every password replaced by `***`.
pub fn redact(text: &str) -> String {
    redact_key_values(&redact_userinfo(text))
}

/// `scheme://user:secret@host` and `scheme://user/secret@host` keep the user.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/' after '@', or at white space.
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        // File URLs (sqlite:///a@b.db) have a path here, never a user.
        let scheme = head[..head.len() - 3]
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let has_userinfo =
            !matches!(scheme.as_str(), "sqlite" | "file") && !authority.starts_with('/');
        // The query starts at the first '?' after the userinfo (a password may hold one).
        let at = authority.rfind('@').filter(|_| has_userinfo);
        let (authority, query) = match authority[at.unwrap_or(0)..].find('?') {
            Some(q) => {
                let q = at.unwrap_or(0) + q;
                (&authority[..q], Some(&authority[q + 1..]))
            }
            None => (authority, None),
        };
        match at {
            Some(at) => {
                let userinfo = &authority[..at];
                let user_end = userinfo.find([':', '/']).unwrap_or(userinfo.len());
                out.push_str(&userinfo[..user_end]);
                if user_end < userinfo.len() {
                    out.push(userinfo.as_bytes()[user_end] as char);
                    out.push_str(MASK);
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        if let Some(query) = query {
            out.push('?');
            out.push_str(&mask_query(query));
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `password=secret`, `password = 'a b'`, `?password=secret&x=1` (any case).
fn redact_key_values(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let key = SECRET_KEYS.iter().find(|k| {
            lower[i..].starts_with(*k)
                && (i == 0 || !is_word(bytes[i - 1]))
                && !bytes.get(i + k.len()).is_some_and(|b| is_word(*b))
        });
        let Some(key) = key else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        // The key, optional spaces, '=' and optional spaces; else not a pair.
        let mut j = i + key.len();
        while bytes.get(j) == Some(&b' ') {
            j += 1;
        }
        if bytes.get(j) != Some(&b'=') {
            out.push_str(&text[i..i + key.len()]);
            i += key.len();
            continue;
        }
        j += 1;
        while bytes.get(j) == Some(&b' ') {
            j += 1;
        }
        out.push_str(&text[i..j]);
        out.push_str(MASK);
        i = j + value_len(&text[j..]);
    }
    out
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Length of a value: quoted ('...' with \' escapes, or "..."), or up to
/// white space, '&', ';' or a closing quote.
fn value_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(&q @ (b'\'' | b'"')) => {
            let mut k = 1;
            while k < bytes.len() {
                if bytes[k] == b'\\' {
                    k += 2;
                    continue;
                }
                if bytes[k] == q {
                    return k + 1;
                }
                k += 1;
            }
            bytes.len()
        }
        _ => s
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';' | '"' | '\'' | ','))
            .unwrap_or(s.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn every_form_is_redacted() {
        let cases = [
            (
                "postgres://alice:s3cr%40t@db:5432/app",
                "postgres://alice:***@db:5432/app",
            ),
            ("postgres://alice@db/app", "postgres://alice@db/app"),
            (
                "postgres://alice@db/app?password=s3cret&sslmode=disable",
                "postgres://alice@db/app?password=***&sslmode=disable",
            ),
            (
                "postgresql://db/app?user=a&Password=s3cret",
                "postgresql://db/app?user=a&Password=***",
            ),
            (
                "host=db user=alice password=s3cret dbname=app",
                "host=db user=alice password=*** dbname=app",
            ),
            (
                "host=db password = 'se cr\\'et' dbname=app",
                "host=db password = *** dbname=app",
            ),
            (
                "oracle://scott/tiger@db:1521/x",
                "oracle://scott/***@db:1521/x",
            ),
            (
                "oracle://scott:tiger@db:1521/x",
                "oracle://scott:***@db:1521/x",
            ),
            (
                "invalid URL \"postgres://u:pw@h/d\": bad",
                "invalid URL \"postgres://u:***@h/d\": bad",
            ),
            ("passwordless login", "passwordless login"),
            ("sqlite:///tmp/a@b/x.db", "sqlite:///tmp/a@b/x.db"),
            ("sqlite://dir/a:b@c.db", "sqlite://dir/a:b@c.db"),
            ("user_password_hash=1", "user_password_hash=1"),
            ("PWD=x;UID=y", "PWD=***;UID=y"),
            (
                "postgres://alice@db/app?password_file=S3cretPW",
                "postgres://alice@db/app?password_file=***",
            ),
            (
                "postgres://db/app?sslmode=disable&passwrod=S3cret&application_name=x",
                "postgres://db/app?sslmode=disable&passwrod=***&application_name=x",
            ),
            ("postgres://db/app?S3cret", "postgres://db/app?***"),
            (
                "sqlite://x.db?passwrod=S3cret",
                "sqlite://x.db?passwrod=***",
            ),
            (
                "oracle://scott@db:1521/x?connect_timeout=5&pwd_file=S3cret",
                "oracle://scott@db:1521/x?connect_timeout=5&pwd_file=***",
            ),
            (
                "oracle://scott:ti?ger@db/x?%70asswrod=S3cret",
                "oracle://scott:***@db/x?%70asswrod=***",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn unknown_options_are_named_never_their_values() {
        use super::unknown_options;
        let known = &["sslmode", "connect_timeout"];
        assert_eq!(
            unknown_options(
                "postgres://h/d?sslmode=disable&Passwrod=S3cret&%70assword_file=x&S3cret&a%20b=1",
                known
            ),
            [
                "`passwrod`",
                "`password_file`",
                "a part with no `=`",
                "an option whose name is not a plain word"
            ]
        );
        assert!(unknown_options("postgres://h/d?sslmode=disable", known).is_empty());
        assert!(unknown_options("postgres://h/d", known).is_empty());
    }

    #[test]
    fn key_value_keys_are_named_and_values_never_taken_for_keys() {
        use super::key_value_names;
        assert_eq!(
            key_value_names("host=h passwrod='a b=c\\' d=e' dbname = x"),
            ["`host`", "`passwrod`", "`dbname`"]
        );
        assert_eq!(key_value_names("host=h password S3cret=x"), ["`host`"]);
        assert_eq!(
            key_value_names("host=h password='S3cret"),
            ["`host`", "`password`"]
        );
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for text in [
            "",
            "tenant alice: no such table",
            "sqlite:///tmp/a b/pathfinder.db",
            "ünïcödé password",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
