//! Removes passwords from text before it is shown, in every form the drivers
//! accept: URL userinfo (`postgres://u:secret@h`, Oracle's `u/secret@h`), URL
//! query parameters (`?password=secret`) and key=value connection strings
//! (`host=h password='se cret'`). Every message, JSON document and audit row
//! that can carry a connection string goes through [`redact`].

/// Parameter names whose value is a secret (lower case).
const SECRET_KEYS: &[&str] = &["password", "passwd", "pwd", "sslpassword", "pass"];

const MASK: &str = "***";

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
        match authority.rfind('@').filter(|_| has_userinfo) {
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
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
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
