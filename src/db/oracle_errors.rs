//! Oracle errors in our terms: the kind the caller acts on, whether the session
//! is gone, and a one-line message that never carries a password. Pure.

use crate::db::{DbError, DbErrorKind};

/// What we keep of an `oracle::Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorInfo {
    /// The ORA- code, when Oracle raised the error.
    pub ora: Option<i32>,
    /// The DPI- code, when the client library (ODPI-C) raised it.
    pub dpi: Option<i32>,
    pub text: String,
}

impl ErrorInfo {
    pub(crate) fn of(err: &oracle::Error) -> Self {
        let text = err.to_string();
        ErrorInfo {
            ora: err
                .oci_code()
                .or_else(|| err.db_error().map(|e| e.code()).filter(|c| *c != 0)),
            dpi: err.dpi_code().or_else(|| code_after(&text, "DPI-")),
            text,
        }
    }
}

/// The number after `prefix` in `text` (`DPI-1080: ...` -> 1080).
fn code_after(text: &str, prefix: &str) -> Option<i32> {
    let at = text.find(prefix)? + prefix.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// ORA- codes after which the session is gone; the list ODPI-C itself uses to
/// mark a session dead (dpiError.c).
const SESSION_LOST: &[i32] = &[
    22, 28, 31, 45, 378, 602, 603, 609, 1012, 1041, 1043, 1089, 1092, 2396, 3113, 3114, 3122, 3135,
    12153, 12537, 12547, 12570, 12583, 27146, 28511, 56600,
];

/// DPI-1010 (not connected) and DPI-1080 (connection was closed by ORA-n).
const DPI_SESSION_LOST: &[i32] = &[1010, 1080];

/// Whether the session is unusable after this error (a worker then opens a new one).
pub(crate) fn connection_lost(info: &ErrorInfo) -> bool {
    info.dpi.is_some_and(|c| DPI_SESSION_LOST.contains(&c))
        || info.ora.is_some_and(|c| SESSION_LOST.contains(&c))
}

pub(crate) fn kind_of(info: &ErrorInfo) -> DbErrorKind {
    if info.dpi == Some(1047) || info.text.contains("DPI-1047") {
        return DbErrorKind::ClientMissing;
    }
    if connection_lost(info) {
        return DbErrorKind::Connection;
    }
    match info.ora {
        Some(955 | 1408 | 1430 | 2260 | 2261 | 2264 | 2275 | 12006) => DbErrorKind::AlreadyExists,
        Some(942 | 12003 | 1418) => DbErrorKind::DoesNotExist,
        Some(1) => DbErrorKind::UniqueViolation,
        Some(1017 | 28000 | 28001) => DbErrorKind::Auth,
        Some(16000 | 1552) => DbErrorKind::ReadOnly,
        Some(54 | 30006 | 4021) => DbErrorKind::Busy,
        Some(12154 | 12514 | 12541 | 12543 | 12170 | 12545 | 28547) => DbErrorKind::Connection,
        _ => DbErrorKind::Other,
    }
}

/// `secret` replaced by `***` wherever it appears, and the value of any
/// `password=` / `pwd=` pair (as in connect descriptors) too.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    let mut out = match secret {
        Some(s) if !s.is_empty() => text.replace(s, "***"),
        _ => text.to_string(),
    };
    for key in ["password=", "pwd="] {
        let mut from = 0;
        while let Some(found) = out[from..].to_ascii_lowercase().find(key) {
            let start = from + found + key.len();
            let end = out[start..]
                .find(|c: char| matches!(c, '&' | ')' | ';' | ',') || c.is_whitespace())
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

/// The one-line error for `info`, about the database at `target` (a connect
/// string without credentials), with `secret` (the password in use) removed.
pub(crate) fn classify(info: &ErrorInfo, target: &str, secret: Option<&str>) -> DbError {
    let kind = kind_of(info);
    if kind == DbErrorKind::ClientMissing {
        return DbError::new(kind, super::CLIENT_HELP);
    }
    let hint = match kind {
        DbErrorKind::Auth => ": check the user and PATHFINDER_DB_PASSWORD",
        DbErrorKind::Connection if connection_lost(info) => {
            ": the connection was lost; run the command again (finished steps are kept)"
        }
        DbErrorKind::Connection => {
            ": check the connect string, the listener and TNS_ADMIN (wallet) settings"
        }
        _ => "",
    };
    DbError::new(
        kind,
        redact(&format!("Oracle {target}: {}{hint}", info.text), secret),
    )
}

/// Oracle's message without the client's prefix and without the help URL
/// lines 23ai adds: `ORA-00955: name is already used by an existing object`.
pub(crate) fn short_message(info: &ErrorInfo) -> String {
    let line = info.text.lines().next().unwrap_or("").trim();
    line.strip_prefix("OCI Error: ")
        .or_else(|| line.strip_prefix("DPI Error: "))
        .unwrap_or(line)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ora(code: i32, text: &str) -> ErrorInfo {
        ErrorInfo {
            ora: Some(code),
            dpi: None,
            text: text.into(),
        }
    }

    fn dpi(text: &str) -> ErrorInfo {
        ErrorInfo {
            ora: None,
            dpi: code_after(text, "DPI-"),
            text: text.into(),
        }
    }

    #[test]
    fn lost_connections_are_recognized() {
        for code in [3113, 3114, 3135, 28, 1012, 2396, 12537] {
            let info = ora(code, "lost");
            assert!(connection_lost(&info), "ORA-{code}");
            assert_eq!(kind_of(&info), DbErrorKind::Connection);
        }
        for text in [
            "DPI Error: DPI-1010: not connected",
            "DPI Error: DPI-1080: connection was closed by ORA-3113",
        ] {
            assert!(connection_lost(&dpi(text)), "{text}");
        }
        // Errors that leave the session usable.
        for code in [955, 942, 1, 1017, 54, 12154] {
            assert!(!connection_lost(&ora(code, "x")), "ORA-{code}");
        }
        assert!(!connection_lost(&dpi(
            "DPI Error: DPI-1047: Cannot locate a 64-bit Oracle Client library"
        )));
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of(&ora(955, "x")), DbErrorKind::AlreadyExists);
        assert_eq!(kind_of(&ora(942, "x")), DbErrorKind::DoesNotExist);
        assert_eq!(kind_of(&ora(1, "x")), DbErrorKind::UniqueViolation);
        assert_eq!(kind_of(&ora(1017, "x")), DbErrorKind::Auth);
        assert_eq!(kind_of(&ora(54, "x")), DbErrorKind::Busy);
        assert_eq!(kind_of(&ora(12154, "x")), DbErrorKind::Connection);
        assert_eq!(kind_of(&ora(904, "x")), DbErrorKind::Other);
        assert_eq!(
            kind_of(&dpi(
                "DPI Error: DPI-1047: Cannot locate a 64-bit Oracle Client library"
            )),
            DbErrorKind::ClientMissing
        );
    }

    #[test]
    fn messages_never_carry_the_password() {
        let info = ora(
            1017,
            "OCI Error: ORA-01017: invalid credential for s3cr3t-pw",
        );
        let err = classify(&info, "db.example.com:1521/svc", Some("s3cr3t-pw"));
        assert!(!err.message.contains("s3cr3t-pw"), "{}", err.message);
        assert!(
            err.message.contains("PATHFINDER_DB_PASSWORD"),
            "{}",
            err.message
        );
        let err = classify(
            &ora(
                12514,
                "OCI Error: ORA-12514: listener does not know of service",
            ),
            "(DESCRIPTION=(ADDRESS=(HOST=h))(PASSWORD=hunter2))",
            None,
        );
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert!(
            err.message.contains("check the connect string"),
            "{}",
            err.message
        );
        assert_eq!(redact("host/svc?pwd=abc&x=1", None), "host/svc?pwd=***&x=1");
        assert_eq!(redact("no secrets here", Some("")), "no secrets here");
    }

    #[test]
    fn messages_are_one_line_and_say_what_to_do() {
        let err = classify(
            &ora(
                3113,
                "OCI Error: ORA-03113: end-of-file on communication channel\nHelp: https://docs.oracle.com/error-help/db/ora-03113/",
            ),
            "h:1521/s",
            None,
        );
        assert!(!err.message.contains('\n'));
        assert!(
            err.message.contains("run the command again"),
            "{}",
            err.message
        );
        let missing = classify(&dpi("DPI Error: DPI-1047: Cannot locate"), "h", None);
        assert_eq!(missing.kind, DbErrorKind::ClientMissing);
        assert!(missing.message.contains("Instant Client"));
    }

    #[test]
    fn short_messages_drop_the_prefix_and_help_lines() {
        let info = ora(
            955,
            "OCI Error: ORA-00955: name is already used by an existing object\nHelp: https://docs.oracle.com/error-help/db/ora-00955/",
        );
        assert_eq!(
            short_message(&info),
            "ORA-00955: name is already used by an existing object"
        );
    }
}
