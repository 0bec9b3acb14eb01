//! verl-format parquet (`data_source`, `prompt` = list of {role, content}, `reward_model` =
//! {style, ground_truth}, where `ground_truth` is a string or a struct {question?, solution?,
//! target}), read row by row with the `parquet` crate's record API.

use super::{collect, Columns, DataError, Dataset, Message, OnBadRow, Record};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use std::path::Path;

fn get<'a>(row: &'a Row, name: &str) -> Option<&'a Field> {
    row.get_column_iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, f)| f)
}

fn text(field: &Field) -> Option<String> {
    match field {
        Field::Str(s) => Some(s.clone()),
        _ => None,
    }
}

/// The field at a dotted path through nested structs.
fn at<'a>(row: &'a Row, path: &str) -> Option<&'a Field> {
    let mut parts = path.split('.');
    let mut field = get(row, parts.next()?)?;
    for part in parts {
        match field {
            Field::Group(g) => field = get(g, part)?,
            _ => return None,
        }
    }
    Some(field)
}

/// An answer field's text: a string, a number, or a struct's `target`.
fn answer_text(field: &Field) -> Option<String> {
    match field {
        Field::Str(s) => Some(s.clone()),
        Field::Int(x) => Some(x.to_string()),
        Field::Long(x) => Some(x.to_string()),
        Field::Double(x) => Some(x.to_string()),
        Field::Float(x) => Some(x.to_string()),
        Field::Group(g) => get(g, "target").and_then(answer_text),
        _ => None,
    }
}

fn record(path: &Path, index: usize, row: &Row, columns: &Columns) -> Result<Record, DataError> {
    let bad = |field: &str, message: &str| DataError::Row {
        path: path.display().to_string(),
        unit: "row",
        row: index,
        field: field.into(),
        message: message.into(),
    };
    let data_source = get(row, "data_source")
        .and_then(text)
        .ok_or_else(|| bad("data_source", "missing or not a string"))?;
    let prompt = match at(row, &columns.prompt) {
        Some(Field::ListInternal(list)) => list
            .elements()
            .iter()
            .map(|m| match m {
                Field::Group(g) => Some(Message {
                    role: get(g, "role").and_then(text)?,
                    content: get(g, "content").and_then(text)?,
                }),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                bad(
                    &columns.prompt,
                    "expected a list of {role, content} strings",
                )
            })?,
        Some(Field::Str(s)) => vec![Message {
            role: "user".into(),
            content: s.clone(),
        }],
        _ => {
            return Err(bad(
                &columns.prompt,
                "missing, or neither a list of messages nor a string (data.prompt_key names \
                 another column)",
            ))
        }
    };
    if prompt.is_empty() {
        return Err(bad(&columns.prompt, "empty"));
    }
    let extra_info = get(row, "extra_info").map(|f| f.to_json_value());
    if !columns.answer.is_empty() {
        let ground_truth = at(row, &columns.answer)
            .and_then(answer_text)
            .ok_or_else(|| {
                bad(
                    &columns.answer,
                    "missing or not a string, number or struct with `target` (data.answer_key)",
                )
            })?;
        return Ok(Record {
            row: index,
            data_source,
            prompt,
            ground_truth,
            solution: None,
            extra_info,
        });
    }
    let reward = match get(row, "reward_model") {
        Some(Field::Group(g)) => g,
        _ => return Err(bad("reward_model", "missing or not a struct")),
    };
    let (ground_truth, solution) = match get(reward, "ground_truth") {
        Some(Field::Str(s)) => (s.clone(), None),
        Some(Field::Group(g)) => (
            get(g, "target").and_then(text).ok_or_else(|| {
                bad(
                    "reward_model.ground_truth.target",
                    "missing or not a string",
                )
            })?,
            get(g, "solution").and_then(text),
        ),
        _ => {
            return Err(bad(
                "reward_model.ground_truth",
                "missing, or neither a string nor a struct with `target`",
            ))
        }
    };
    Ok(Record {
        row: index,
        data_source,
        prompt,
        ground_truth,
        solution,
        extra_info,
    })
}

/// Reads every row; malformed rows fail or are skipped per `on_bad`.
pub fn read(path: &Path, on_bad: OnBadRow, columns: &Columns) -> Result<Dataset, DataError> {
    let file_err = |m: String| DataError::File {
        path: path.display().to_string(),
        message: m,
    };
    let file = std::fs::File::open(path).map_err(|e| file_err(e.to_string()))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| file_err(format!("not a readable parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| file_err(e.to_string()))?;
    let records = rows.enumerate().map(|(i, r)| match r {
        Ok(row) => record(path, i, &row, columns),
        Err(e) => Err(DataError::Row {
            path: path.display().to_string(),
            unit: "row",
            row: i,
            field: "<row>".into(),
            message: e.to_string(),
        }),
    });
    collect(path, records, on_bad)
}
