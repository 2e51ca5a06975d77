//! Connection strings described for messages without their secrets.
//!
//! A connection string carries a password in many places: the URL's user info (where it
//! may itself hold `@` or `:`, percent-encoded or not), a `password` query parameter, a
//! key-value DSN's `password=`. Rather than cut the secret out of the text, which misses
//! whatever form the cutting did not foresee, the message is built from the few parts that
//! are safe to show, as sqlx's own parser reads them.
//!
//! URLs are taken apart by the `url` crate, the parser sqlx itself reads them with, so that
//! both see the same user, host, path and parameters. Key-value connection strings
//! (`host=db password=...`), which sqlx does not read and `url` cannot parse, are read
//! here by libpq's rules.

use sqlx::postgres::PgConnectOptions;
use url::Url;

/// The query parameters and key-value keys that say where a connection goes. Every other
/// one (`password`, `sslpassword`, `options`, parameters sqlx does not know) stays out of
/// messages, and out of the parse below: sqlx logs the value of a parameter it does not
/// know.
const WHERE: &[&str] = &["host", "hostaddr", "port", "dbname", "user"];

/// Where `url` points, for messages: `postgres://user@host:port/database` as sqlx reads
/// the URL (its defaults filled in), never the password or a query parameter. Text that is
/// not a `postgres://` URL is described, never echoed.
pub(crate) fn redact(url: &str) -> String {
    let text = url.trim();
    if is_postgres_url(text) {
        return describe_url(text);
    }
    match key_value(text) {
        Some(pairs) if pairs.is_empty() => {
            "(a key-value connection string, which sqlx does not read: give a postgres:// URL)"
                .to_owned()
        }
        Some(pairs) => {
            let shown: Vec<String> = pairs
                .iter()
                .map(|(key, value)| format!("{key}={}", quote_value(value)))
                .collect();
            format!(
                "(a key-value connection string with {}, which sqlx does not read: give a postgres:// URL)",
                shown.join(" ")
            )
        }
        None => "(a connection string that is not a postgres:// URL)".to_owned(),
    }
}

/// Whether `text` starts with `postgres://` or `postgresql://` (the schemes sqlx connects
/// with), in any case. Other text is not described as a URL: `secret:x` parses as one,
/// with a database named `x`.
fn is_postgres_url(text: &str) -> bool {
    ["postgres://", "postgresql://"].iter().any(|scheme| {
        text.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
    })
}

/// Whether part of a password may read as the path, a parameter or the fragment of `url`.
///
/// The host part ends at the first `/`, `?` or `#`. A password holding one of those
/// unencoded ends it early, and the rest of the password (up to its `@`) then reads as the
/// path, a parameter or the fragment; an `@` there is the sign.
fn password_may_spill(url: &Url) -> bool {
    [Some(url.path()), url.query(), url.fragment()]
        .into_iter()
        .flatten()
        .any(|part| part.contains('@'))
}

/// `text` is a `postgres://` URL.
fn describe_url(text: &str) -> String {
    let Ok(mut url) = Url::parse(text) else {
        return "(a postgres:// URL that does not parse)".to_owned();
    };
    if password_may_spill(&url) {
        return "(a postgres:// URL with an `@` after its host part, not shown: percent-encode `@`, `/`, `?` and `#` in the password)".to_owned();
    }
    // Only what says where the connection goes reaches sqlx's parser: it logs the value
    // of a parameter it does not know.
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| WHERE.contains(&key.as_ref()))
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url.set_fragment(None);
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    // Without a host (a socket given as `?host=`), `url` refuses to set any password, even
    // none: there is none to clear then.
    if url.password().is_some() && url.set_password(None).is_err() {
        return "(a postgres:// URL that does not parse)".to_owned();
    }
    match url.as_str().parse::<PgConnectOptions>() {
        Ok(options) => {
            let host = match options.get_socket() {
                Some(socket) => socket.display().to_string(),
                None => options.get_host().to_owned(),
            };
            let database = options
                .get_database()
                .map(|database| format!("/{database}"))
                .unwrap_or_default();
            format!(
                "postgres://{}@{host}:{}{database}",
                options.get_username(),
                options.get_port()
            )
        }
        Err(_) => "(a postgres:// URL that does not parse)".to_owned(),
    }
}

/// The `WHERE` pairs of a libpq key-value connection string (`host=db user=app
/// password='a b'`), read by libpq's rules: `key = value` pairs apart by white space, a
/// value either unquoted up to white space or in single quotes, `\` escaping the next
/// character. `None` unless the whole text reads so: a value cut short must not show.
fn key_value(text: &str) -> Option<Vec<(&str, String)>> {
    let mut rest = text.trim_start_matches(is_space);
    let mut pairs = Vec::new();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (key, after_key) = rest.split_at(key_end);
        let after_equals = after_key
            .trim_start_matches(is_space)
            .strip_prefix('=')?
            .trim_start_matches(is_space);
        if key.is_empty() {
            return None;
        }
        let (value, after_value) = read_value(after_equals)?;
        if WHERE.contains(&key) {
            pairs.push((key, value));
        }
        rest = after_value.trim_start_matches(is_space);
        // Pairs are apart by white space; `a=b'c'` is not two pairs.
        if !rest.is_empty() && after_value.len() == rest.len() {
            return None;
        }
    }
    Some(pairs)
}

/// White space between key-value pairs. libpq also splits at `\v`; not splitting there
/// only ever shows less (the next pair reads as part of this value), never part of a
/// password as a pair of its own.
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
}

/// One value of a key-value connection string and the text after it.
fn read_value(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    let quoted = text.starts_with('\'');
    if quoted {
        chars.next();
    }
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '\'' if quoted => return Some((value, &text[at + 1..])),
            c if !quoted && is_space(c) => return Some((value, &text[at..])),
            c => value.push(c),
        }
    }
    // An unquoted value may end the text; a quoted one must be closed.
    (!quoted).then_some((value, ""))
}

/// `value` as a key-value connection string writes it: quoted when it is empty or holds
/// white space, a quote or a backslash.
fn quote_value(value: &str) -> String {
    if !value.is_empty() && !value.chars().any(|c| is_space(c) || c == '\'' || c == '\\') {
        return value.to_owned();
    }
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

/// The query parameters sqlx reads from a `postgres://` URL (sqlx-postgres 0.9's
/// `options/parse.rs`); `options[...]` ones too.
const SQLX_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// `url` without the query parameters sqlx does not read, and their names. sqlx logs the
/// *value* of every parameter it ignores, and a mistyped `pasword=` holds a password: so
/// those are dropped before sqlx sees the URL, and only their names are reported; not even
/// those where part of a password may read as a parameter (`postgres://app:12?hunter2=x@db/x`
/// has the "key" `hunter2`), each of them then reported as "(a parameter)".
pub(crate) fn without_unknown_parameters(url: &str) -> (String, Vec<String>) {
    // Text that `url` cannot parse, sqlx cannot either (it parses with `url`), so it never
    // reads its parameters.
    let Ok(mut parsed) = Url::parse(url) else {
        return (url.to_owned(), Vec::new());
    };
    let Some(query) = parsed.query() else {
        return (url.to_owned(), Vec::new());
    };
    let spilled = password_may_spill(&parsed);
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        // The key as sqlx reads it: form-decoded (`application%5Fname` is
        // `application_name`).
        let key = url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .map(|(key, _)| key.into_owned())
            .unwrap_or_default();
        if SQLX_PARAMETERS.contains(&key.as_str()) || key.starts_with("options[") {
            kept.push(pair.to_owned());
        } else if !spilled
            && pair.contains('=')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c))
        {
            dropped.push(key);
        } else {
            // A pair without `=` may be a value that lost its key: it is not shown.
            dropped.push("(a parameter)".to_owned());
        }
    }
    // The kept pairs as they were written: `set_query` keeps their escapes.
    parsed.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    (parsed.into(), dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_are_dropped_by_name() {
        let (url, dropped) = without_unknown_parameters(
            "postgres://app@db/x?sslmode=require&pasword=hunter2&application_name=a&sslpassword=hunter3",
        );
        assert_eq!(
            url,
            "postgres://app@db/x?sslmode=require&application_name=a"
        );
        assert_eq!(dropped, ["pasword", "sslpassword"]);
        // Keys as sqlx reads them: percent-decoded.
        let (url, dropped) = without_unknown_parameters(
            "postgres://db/x?application%5Fname=a&ssl%6Dode=require&options%5bx%5d=1&hunter2",
        );
        assert_eq!(
            url,
            "postgres://db/x?application%5Fname=a&ssl%6Dode=require&options%5bx%5d=1"
        );
        assert_eq!(dropped, ["(a parameter)"]);
        let (_, dropped) = without_unknown_parameters("postgres://db/x?hun%20ter2=1");
        assert_eq!(dropped, ["(a parameter)"]);
        // Part of a password read as a parameter: no name is reported.
        let (_, dropped) = without_unknown_parameters("postgres://app:12?hunter2=x@db/x");
        assert_eq!(dropped, ["(a parameter)"]);
        let (_, dropped) =
            without_unknown_parameters("postgres://app:12?sslmode=x&hunter2=y&z=1@db/x");
        assert_eq!(dropped, ["(a parameter)", "(a parameter)"]);
        assert_eq!(
            without_unknown_parameters("postgres://db/x").0,
            "postgres://db/x"
        );
    }

    /// Connection strings of every form, each with the password `hunter2` somewhere.
    const WITH_PASSWORDS: &[&str] = &[
        "postgres://app:hunter2@db:5432/x",
        "postgres://app:hun@ter2@db/x",
        "postgres://app:hun%40ter2@db/x",
        "postgres://app:hun:ter2@db/x",
        "postgres://db/x?password=hunter2",
        "postgres://app@db/x?user=other&password=hunter2",
        "postgres://db/x?sslpassword=hunter2&application_name=hunter2",
        "postgres://db/x?options=-c%20app.secret%3Dhunter2",
        "postgres://db/x?passwort=hunter2",
        "postgres://app:hunter2@db/x#hunter2",
        "postgres://app:12/hunter2@db/x",
        "postgres://app:/hunter2@db/x",
        "postgres://app:12?hunter2@db/x",
        "postgres://app:hun#ter2@db/x",
        "postgres://app:hunter2@db:notaport/x",
        "POSTGRESQL://app:hunter2@db/x",
        "host=localhost user=app password=hunter2",
        "host=localhost password='hun ter2' dbname=x",
        "password = hunter2 host = db",
        "host=db password='hunter2",
        "host=db password=hunter2\\",
        "password=hun\\ ter2 user=app",
        "host=db password hunter2",
        "host=db password=hun\u{a0}user=ter2",
        "mysql://app:hunter2@db/x",
        "hunter2:x",
        "hunter2",
        "",
    ];

    #[test]
    fn never_shows_a_password() {
        for url in WITH_PASSWORDS {
            let shown = redact(url);
            assert!(!shown.contains("hunter2"), "{url} shows as {shown}");
            assert!(!shown.contains("ter2"), "{url} shows as {shown}");
        }
    }

    #[test]
    fn describes_urls_from_what_sqlx_reads() {
        let cases = [
            (
                "postgres://app:secret@db:5433/x",
                "postgres://app@db:5433/x",
            ),
            ("postgres://app:pa@ss@db/x", "postgres://app@db:5432/x"),
            (
                "postgres://app@db/x?user=other&password=s&port=6000",
                "postgres://other@db:6000/x",
            ),
            (
                "postgres://app@db/x?host=elsewhere&dbname=y",
                "postgres://app@elsewhere:5432/y",
            ),
            (
                "postgresql://app@%2Fvar%2Frun%2Fpostgresql/x",
                "postgres://app@/var/run/postgresql:5432/x",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
        }
        // Without a user, sqlx's default (PGUSER, else the OS user) is the one tried.
        assert!(redact("postgres://db/x").ends_with("@db:5432/x"));
        // No host in the authority: a socket directory as a parameter, as sqlx reads it.
        let socket = redact("postgres:///mydb?host=/var/run/postgresql");
        assert!(
            socket.starts_with("postgres://") && socket.ends_with("@/var/run/postgresql:5432/mydb"),
            "{socket}"
        );
        assert_eq!(
            redact("postgres:///mydb?host=/var/run/postgresql&user=app&port=6000"),
            "postgres://app@/var/run/postgresql:6000/mydb"
        );
    }

    #[test]
    fn describes_what_is_not_a_url() {
        assert_eq!(
            redact("host=localhost port=5432 user=app password=secret dbname='my db'"),
            "(a key-value connection string with host=localhost port=5432 user=app dbname='my db', which sqlx does not read: give a postgres:// URL)"
        );
        assert_eq!(
            redact("password=secret"),
            "(a key-value connection string, which sqlx does not read: give a postgres:// URL)"
        );
        for garbage in ["host=db password='secret", "secret:x", "secret", ""] {
            assert_eq!(
                redact(garbage),
                "(a connection string that is not a postgres:// URL)",
                "{garbage}"
            );
        }
        assert_eq!(
            redact("postgres://app:12/secret@db/x"),
            "(a postgres:// URL with an `@` after its host part, not shown: percent-encode `@`, `/`, `?` and `#` in the password)"
        );
        assert_eq!(
            redact("postgres://app:secret@db:port/x"),
            "(a postgres:// URL that does not parse)"
        );
    }

    #[test]
    fn reads_key_values_as_libpq_does() {
        assert_eq!(
            key_value("host = db  user='a \\' b' password=x\\ y"),
            Some(vec![
                ("host", "db".to_owned()),
                ("user", "a ' b".to_owned())
            ])
        );
        assert_eq!(
            key_value("user=a'b'"),
            Some(vec![("user", "a'b'".to_owned())])
        );
        assert_eq!(key_value("user='a'b"), None);
        assert_eq!(key_value("user"), None);
        assert_eq!(key_value("=x"), None);
        assert_eq!(key_value("user='a"), None);
    }
}
