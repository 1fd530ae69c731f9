//! Credentials from the registries' exports: CSV, JSON, or the rows of an
//! SQL query (`portier central push --from-sql`), all with the same column
//! names (see `docs/central.md`):
//!
//! | column | required | example |
//! |---|---|---|
//! | `card` | yes | `h10301:42:1001`, `raw:9501f480/26` |
//! | `name` | no | `A. Staff` |
//! | `access_levels` | no | `staff;lab` (or a JSON / PostgreSQL array) |
//! | `valid_from`, `valid_until` | no | RFC 3339, or a date (`valid_until` a date: to the end of that day, UTC) |
//! | `blocked` | no | `lost`, `stolen`, `penalty` |
//! | `extended_unlock`, `lockdown_exempt` | no | `true` / `false` / `1` / `0` / `yes` / `no` |
//!
//! Guarantees: every error names the source, the record (line or row) and
//! the column; unknown columns are refused (a typo never silently drops a
//! validity period); a CSV row with more or fewer fields than the header
//! is refused (a missing `valid_until` never means "valid forever"); a
//! card listed twice is refused. CSV errors give the line the row starts
//! on (the header is line 1; a quoted field may span lines).

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;
use thiserror::Error;

use crate::rules::{BlockReason, Credential, CredentialKey};

/// A record that cannot become a credential.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{source_name}: {unit} {record}: {message}")]
pub struct ImportError {
    /// File name or `SQL query`.
    pub source_name: String,
    /// `line` (CSV) or `record` (JSON array element, SQL row).
    pub unit: &'static str,
    /// 1-based line (CSV: the header is line 1) or record number.
    pub record: usize,
    /// What is wrong (naming the column).
    pub message: String,
}

/// What is wrong with one record (an [`ImportError`] adds where it is).
#[derive(Debug, Error)]
enum RecordError {
    /// A column no credential has: a typo must not silently drop a value.
    #[error("unknown column `{column}` (known: {})", COLUMNS.join(", "))]
    UnknownColumn {
        /// The column as named in the source.
        column: String,
    },
    /// A value that is neither text, a number nor a boolean.
    #[error("column `{column}`: expected text, found {found}")]
    NotText {
        /// The column.
        column: String,
        /// The value found.
        found: Value,
    },
    /// A `card` that is no card format Portier knows.
    #[error("column `card`: {text:?} is not a card such as h10301:42:1001 or raw:9501f480/26")]
    NotCard {
        /// The text found.
        text: String,
    },
    /// A `blocked` value that is no block reason.
    #[error("column `blocked`: {text:?} is not lost, stolen or penalty")]
    NotBlockReason {
        /// The text found.
        text: String,
    },
    /// An `access_levels` array element that is not a string.
    #[error("column `access_levels`: {found} is not a name")]
    NotLevelName {
        /// The element found.
        found: Value,
    },
    /// An `access_levels` value that is neither text nor an array.
    #[error("column `access_levels`: expected names, found {found}")]
    NotLevelNames {
        /// The value found.
        found: Value,
    },
    /// A time that is neither RFC 3339 nor a date.
    #[error("column `{column}`: {text:?} is not an RFC 3339 time or a YYYY-MM-DD date")]
    NotTime {
        /// The column.
        column: String,
        /// The text found.
        text: String,
    },
    /// A date that has no next day or no UTC instant (the ends of jiff's
    /// range).
    #[error("column `{column}`: {source}")]
    DateOutOfRange {
        /// The column.
        column: String,
        /// Cause.
        #[source]
        source: jiff::Error,
    },
    /// A flag that is not true or false in any of the usual spellings.
    #[error("column `{column}`: {text:?} is not true or false")]
    NotFlag {
        /// The column.
        column: String,
        /// The text found (lower case).
        text: String,
    },
    /// A record without a card: there is nothing to grant to.
    #[error("no `card`")]
    NoCard,
    /// A validity period that ends before it starts.
    #[error("valid_until {until} is before valid_from {from}")]
    EndsBeforeStart {
        /// `valid_from`.
        from: Timestamp,
        /// `valid_until`.
        until: Timestamp,
    },
}

const COLUMNS: [&str; 8] = [
    "card",
    "name",
    "access_levels",
    "valid_from",
    "valid_until",
    "blocked",
    "extended_unlock",
    "lockdown_exempt",
];

/// One record: column → value (`None`: empty / NULL).
pub type Record = Vec<(String, Option<Value>)>;

/// Split CSV text (RFC 4180: `,` separated, `"` quoted, `""` inside quotes,
/// CRLF or LF) into rows of fields, each with the line it starts on.
pub fn parse_csv(source_name: &str, text: &str) -> Result<Vec<(usize, Vec<String>)>, ImportError> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line = 1;
    let mut row_line = 1;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push((row_line, std::mem::take(&mut row)));
                line += 1;
                row_line = line;
                any = false;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(ImportError {
            source_name: source_name.to_owned(),
            unit: "line",
            record: row_line,
            message: format!("a quoted field (column {}) is not closed", row.len() + 1),
        });
    }
    if any {
        row.push(field);
        rows.push((row_line, row));
    }
    Ok(rows)
}

/// CSV text (header row first) into credentials. Every row must have as
/// many fields as the header (an empty line is skipped).
pub fn from_csv(source_name: &str, text: &str) -> Result<Vec<Credential>, ImportError> {
    let mut rows = parse_csv(source_name, text)?.into_iter();
    let Some((_, header)) = rows.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    let mut records = Vec::new();
    for (line, r) in rows.filter(|(_, r)| !(r.len() == 1 && r[0].trim().is_empty())) {
        if r.len() != header.len() {
            let message = if r.len() < header.len() {
                format!(
                    "{} fields, the header has {}: column {} `{}` and after are missing",
                    r.len(),
                    header.len(),
                    r.len() + 1,
                    header[r.len()]
                )
            } else {
                format!(
                    "{} fields, the header has {}: column {} has no header",
                    r.len(),
                    header.len(),
                    header.len() + 1
                )
            };
            return Err(ImportError {
                source_name: source_name.to_owned(),
                unit: "line",
                record: line,
                message,
            });
        }
        let rec: Record = header
            .iter()
            .cloned()
            .zip(r.into_iter().map(|v| {
                let v = v.trim().to_owned();
                (!v.is_empty()).then_some(Value::String(v))
            }))
            .collect();
        records.push((line, rec));
    }
    numbered_records_to_credentials(source_name, "line", records)
}

/// A JSON array of objects into credentials.
pub fn from_json(source_name: &str, text: &str) -> Result<Vec<Credential>, ImportError> {
    let err = |record, message: String| ImportError {
        source_name: source_name.to_owned(),
        unit: "record",
        record,
        message,
    };
    let v: Value = serde_json::from_str(text).map_err(|e| err(0, format!("not JSON: {e}")))?;
    let Value::Array(items) = v else {
        return Err(err(0, "expected an array of objects".into()));
    };
    let mut records = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(err(i + 1, "expected an object".into()));
        };
        records.push(
            m.into_iter()
                .map(|(k, v)| (k, (!v.is_null()).then_some(v)))
                .collect(),
        );
    }
    records_to_credentials(source_name, records, 1)
}

/// Records (column, value) into credentials; `first` numbers the first one.
pub fn records_to_credentials(
    source_name: &str,
    records: impl IntoIterator<Item = Record>,
    first: usize,
) -> Result<Vec<Credential>, ImportError> {
    numbered_records_to_credentials(
        source_name,
        "record",
        records.into_iter().enumerate().map(|(i, r)| (first + i, r)),
    )
}

/// Records, each with its line or record number (`unit`), into
/// credentials.
pub fn numbered_records_to_credentials(
    source_name: &str,
    unit: &'static str,
    records: impl IntoIterator<Item = (usize, Record)>,
) -> Result<Vec<Credential>, ImportError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (record, rec) in records {
        let c = credential(&rec).map_err(|e| ImportError {
            source_name: source_name.to_owned(),
            unit,
            record,
            message: e.to_string(),
        })?;
        if !seen.insert(c.key.clone()) {
            return Err(ImportError {
                source_name: source_name.to_owned(),
                unit,
                record,
                message: format!("card {} listed twice", c.key),
            });
        }
        out.push(c);
    }
    Ok(out)
}

fn credential(rec: &Record) -> Result<Credential, RecordError> {
    let mut c = Credential {
        key: CredentialKey::Raw {
            data: String::new(),
        },
        display_name: None,
        access_levels: Vec::new(),
        valid_from: None,
        valid_until: None,
        blocked: None,
        pin: None,
        extended_unlock: false,
        lockdown_exempt: false,
    };
    let mut card = false;
    for (col, value) in rec {
        let col = col.as_str();
        if !COLUMNS.contains(&col) {
            return Err(RecordError::UnknownColumn {
                column: col.to_owned(),
            });
        }
        let Some(value) = value else { continue };
        let text = || match value {
            Value::String(s) => Ok(s.trim().to_owned()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(RecordError::NotText {
                column: col.to_owned(),
                found: other.clone(),
            }),
        };
        match col {
            "card" => {
                let t = text()?;
                c.key = t
                    .parse()
                    .map_err(|_| RecordError::NotCard { text: t.clone() })?;
                card = true;
            }
            "name" => c.display_name = Some(text()?),
            "access_levels" => c.access_levels = levels(value)?,
            "valid_from" => c.valid_from = Some(time(&text()?, false, col)?),
            "valid_until" => c.valid_until = Some(time(&text()?, true, col)?),
            "blocked" => {
                c.blocked = Some(match text()?.as_str() {
                    "lost" => BlockReason::Lost,
                    "stolen" => BlockReason::Stolen,
                    "penalty" => BlockReason::Penalty,
                    "" | "false" | "no" => continue,
                    o => {
                        return Err(RecordError::NotBlockReason { text: o.to_owned() });
                    }
                });
            }
            "extended_unlock" => c.extended_unlock = flag(&text()?, col)?,
            "lockdown_exempt" => c.lockdown_exempt = flag(&text()?, col)?,
            _ => unreachable!("checked against COLUMNS above"),
        }
    }
    if !card {
        return Err(RecordError::NoCard);
    }
    if let (Some(f), Some(u)) = (c.valid_from, c.valid_until)
        && u < f
    {
        return Err(RecordError::EndsBeforeStart { from: f, until: u });
    }
    Ok(c)
}

fn levels(v: &Value) -> Result<Vec<String>, RecordError> {
    let from_text = |s: &str| {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(s);
        s.split([';', ','])
            .map(|l| l.trim().trim_matches('"').to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    match v {
        Value::String(s) => Ok(from_text(s)),
        Value::Array(a) => a
            .iter()
            .map(|l| {
                l.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| RecordError::NotLevelName { found: l.clone() })
            })
            .collect(),
        o => Err(RecordError::NotLevelNames { found: o.clone() }),
    }
}

fn time(t: &str, end_of_day: bool, col: &str) -> Result<Timestamp, RecordError> {
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    let date: jiff::civil::Date = t.parse().map_err(|_| RecordError::NotTime {
        column: col.to_owned(),
        text: t.to_owned(),
    })?;
    let out_of_range = |source| RecordError::DateOutOfRange {
        column: col.to_owned(),
        source,
    };
    let date = if end_of_day {
        date.tomorrow().map_err(out_of_range)?
    } else {
        date
    };
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(out_of_range)
}

fn flag(t: &str, col: &str) -> Result<bool, RecordError> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" => Ok(true),
        "false" | "f" | "0" | "no" | "n" | "" => Ok(false),
        o => Err(RecordError::NotFlag {
            column: col.to_owned(),
            text: o.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_validity_and_levels() {
        let text = "card,name,access_levels,valid_from,valid_until,blocked\r\n\
            h10301:42:1001,\"Staff, A.\",staff;lab,2026-01-01,2026-12-31,\n\
            raw:9501f480/26,\"say \"\"hi\"\"\",,2026-01-01T08:00:00Z,,lost\n";
        let c = from_csv("hr.csv", text).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].display_name.as_deref(), Some("Staff, A."));
        assert_eq!(c[0].access_levels, ["staff", "lab"]);
        assert_eq!(
            c[0].valid_until.unwrap().to_string(),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(c[1].display_name.as_deref(), Some("say \"hi\""));
        assert_eq!(c[1].blocked, Some(BlockReason::Lost));
    }

    #[test]
    fn errors_name_record_and_column() {
        let e = from_csv("hr.csv", "card,valid_form\nh10301:1:2,2026-01-01\n").unwrap_err();
        assert_eq!(e.record, 2);
        assert!(e.to_string().contains("valid_form"), "{e}");
        let e = from_csv("hr.csv", "card\nh10301:1:2\nbogus\n").unwrap_err();
        assert_eq!(e.record, 3);
        let e = from_csv("hr.csv", "card\nh10301:1:2\nh10301:1:2\n").unwrap_err();
        assert!(e.message.contains("twice"));
        let e = from_csv("x.csv", "card\n\"open\n").unwrap_err();
        assert!(e.message.contains("quoted"));
    }

    #[test]
    fn rows_with_another_field_count_are_refused_with_line_and_column() {
        // A guest whose valid_until is missing is not valid forever.
        let text = "card,name,valid_until\n\
            h10301:42:1,\"A,\nB\",2026-01-01\n\
            \n\
            h10301:42:2,Guest\n";
        let e = from_csv("guests.csv", text).unwrap_err();
        assert_eq!((e.unit, e.record), ("line", 5), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("guests.csv: line 5: 2 fields, the header has 3")
                && shown.contains("column 3 `valid_until`"),
            "{shown}"
        );
        let e = from_csv("g.csv", "card,name\nh10301:42:1,A,extra\n").unwrap_err();
        assert_eq!(e.record, 2);
        assert!(e.message.contains("column 3 has no header"), "{e}");
        // A last line without a newline counts too.
        let e = from_csv("g.csv", "card,name\nh10301:42:1").unwrap_err();
        assert!(e.message.contains("column 2 `name`"), "{e}");
        // Empty lines are skipped, well-formed rows pass.
        let c = from_csv("g.csv", "card,name\n\nh10301:42:1,A\n\n").unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn json_and_sql_shapes() {
        let c = from_json(
            "guests.json",
            r#"[{"card":"h10301:42:7","name":"Guest","access_levels":["visitor"],
                 "valid_until":"2026-06-30T17:00:00Z","lockdown_exempt":true}]"#,
        )
        .unwrap();
        assert_eq!(c[0].access_levels, ["visitor"]);
        assert!(c[0].lockdown_exempt);
        // PostgreSQL's text forms: arrays and timestamptz.
        let rec = vec![
            ("card".to_owned(), Some(Value::String("h10301:42:8".into()))),
            (
                "access_levels".to_owned(),
                Some(Value::String("{staff,lab}".into())),
            ),
            (
                "valid_from".to_owned(),
                Some(Value::String("2026-01-01 08:00:00+00".into())),
            ),
            (
                "extended_unlock".to_owned(),
                Some(Value::String("t".into())),
            ),
        ];
        let c = records_to_credentials("SQL query", [rec], 1).unwrap();
        assert_eq!(c[0].access_levels, ["staff", "lab"]);
        assert_eq!(c[0].valid_from.unwrap().to_string(), "2026-01-01T08:00:00Z");
        assert!(c[0].extended_unlock);
    }
}
