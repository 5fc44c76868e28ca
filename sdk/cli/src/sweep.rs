//! Parameter sweeps: every combination of the values given for each parameter becomes one
//! task.

/// One parameter's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The parameter's name, passed to the job as `--name value`.
    pub name: String,
    /// Its values, in order.
    pub values: Vec<String>,
}

/// Parses `name=a,b,c` (a list) or `name=start:end:step` (a range, both ends included).
pub fn parse_axis(spec: &str) -> Result<Axis, String> {
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| format!("--sweep {spec:?}: write NAME=a,b,c or NAME=start:end:step"))?;
    let name = name.trim();
    if name.is_empty() || name.starts_with('-') || name.contains(char::is_whitespace) {
        return Err(format!(
            "--sweep {spec:?}: {name:?} is not a parameter name"
        ));
    }
    let values = if values.contains(':') {
        range(values).map_err(|e| format!("--sweep {spec:?}: {e}"))?
    } else {
        values.split(',').map(|v| v.trim().to_string()).collect()
    };
    if values.iter().any(String::is_empty) {
        return Err(format!("--sweep {spec:?}: a value is empty"));
    }
    Ok(Axis {
        name: name.to_string(),
        values,
    })
}

/// The decimals written in a number, to print a range's values as exactly as it was given.
fn decimals(text: &str) -> usize {
    text.split_once('.').map_or(0, |(_, frac)| frac.len())
}

fn range(text: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = text.split(':').map(str::trim).collect();
    let [start, end, step] = parts[..] else {
        return Err("a range is start:end:step".into());
    };
    let number = |s: &str| {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{s:?} is not a number"))
    };
    let (a, b, d) = (number(start)?, number(end)?, number(step)?);
    if d <= 0.0 {
        return Err(format!("the step must be positive, got {step}"));
    }
    if b < a {
        return Err(format!("the range ends ({end}) before it starts ({start})"));
    }
    let count = ((b - a) / d + 1e-9).floor() as u64 + 1;
    if count > 1_000_000 {
        return Err(format!(
            "{count} values; a batch holds at most 1,000,000 tasks"
        ));
    }
    let places = decimals(start).max(decimals(step));
    Ok((0..count)
        .map(|i| format!("{:.*}", places, a + i as f64 * d))
        .collect())
}

/// A CSV of parameter rows: a header of parameter names, then one row per combination.
/// Values may be quoted (`"1,5"` is one value); blank lines are skipped; values are trimmed.
pub fn parse_csv(text: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| e.to_string())?.clone();
    let names: Vec<String> = header.iter().map(String::from).collect();
    if names.is_empty() || (names.len() == 1 && names[0].is_empty()) {
        return Err("the CSV is empty".into());
    }
    if names.iter().any(String::is_empty) {
        return Err(format!(
            "line 1: the header {:?} must name every column",
            names.join(",")
        ));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != names.len() {
            return Err(format!(
                "line {line}: {} values for {} columns",
                record.len(),
                names.len()
            ));
        }
        rows.push(record.iter().map(String::from).collect());
    }
    if rows.is_empty() {
        return Err("the CSV has a header but no rows".into());
    }
    Ok((names, rows))
}

/// Every combination of `axes` (the last varies fastest), each as `(name, value)` pairs.
/// Fails when there would be more than `limit`.
pub fn combinations(axes: &[Axis], limit: usize) -> Result<Vec<Vec<(String, String)>>, String> {
    let total = axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
        .filter(|&n| n <= limit)
        .ok_or_else(|| {
            let sizes: Vec<String> = axes.iter().map(|a| a.values.len().to_string()).collect();
            format!(
                "the sweep makes {} tasks; a batch holds at most {limit}",
                sizes.join(" × ")
            )
        })?;
    let mut out = Vec::with_capacity(total);
    for mut index in 0..total {
        let mut combo = vec![(String::new(), String::new()); axes.len()];
        for (slot, axis) in combo.iter_mut().zip(axes).rev() {
            let n = axis.values.len();
            *slot = (axis.name.clone(), axis.values[index % n].clone());
            index /= n;
        }
        out.push(combo);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_ranges_and_their_product() {
        let t = parse_axis("temperature=1.5:2.5:0.25").unwrap();
        assert_eq!(t.values, ["1.50", "1.75", "2.00", "2.25", "2.50"]);
        let n = parse_axis("size=16,32").unwrap();
        assert_eq!(n.values, ["16", "32"]);
        let i = parse_axis("steps=100:300:100").unwrap();
        assert_eq!(i.values, ["100", "200", "300"]);
        let all = combinations(&[t, n], 100).unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(
            all[1],
            [
                ("temperature".to_string(), "1.50".to_string()),
                ("size".to_string(), "32".to_string())
            ]
        );
        let e = combinations(&[i.clone(), i], 8).unwrap_err();
        assert!(e.contains("3 × 3") && e.contains('8'), "{e}");
    }

    #[test]
    fn bad_sweeps_say_what_is_wrong() {
        for (spec, words) in [
            ("temperature", "NAME=a,b,c"),
            ("t=1:0:1", "ends"),
            ("t=0:1:0", "positive"),
            ("t=0:x:1", "\"x\""),
            ("t=1,,2", "empty"),
        ] {
            let e = parse_axis(spec).unwrap_err();
            assert!(e.contains(words), "{spec}: {e}");
        }
        let e = parse_csv("a,b\n1,2\n3\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("1 values for 2"), "{e}");
        let e = parse_csv("a,,c\n1,2,3\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("every column"), "{e}");
        assert!(parse_csv("a,b\n").unwrap_err().contains("no rows"));
    }

    #[test]
    fn csv_rows_may_quote_values_with_commas() {
        let (names, rows) =
            parse_csv("label, mass\n\"a, b\", 1.5\n\n\"say \"\"hi\"\"\",2\n").unwrap();
        assert_eq!(names, ["label", "mass"]);
        assert_eq!(rows, [["a, b", "1.5"], ["say \"hi\"", "2"]]);
    }
}
