//! Filters a CSV list of businesses by declared criteria and aggregates what passes: counts,
//! mean ratings and review totals, overall and per city and category.
//!
//! The CSV has a header row with the columns `name`, `category`, `city`, `rating` (0–5),
//! `reviews` (a count) and `price_level` (1–4), in any order; other columns are carried
//! through to the matches untouched.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// What a business must satisfy to match. Every field is optional; absent means "any".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    /// One of these categories (case-insensitive).
    pub categories: Option<Vec<String>>,
    /// One of these cities (case-insensitive).
    pub cities: Option<Vec<String>>,
    /// At least this rating.
    pub min_rating: Option<f64>,
    /// At least this many reviews.
    pub min_reviews: Option<u64>,
    /// At most this price level.
    pub max_price_level: Option<u8>,
}

/// Totals for one group of matching businesses.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Group {
    /// Businesses in the group.
    pub count: u64,
    /// Their mean rating.
    pub mean_rating: f64,
    /// Their reviews, summed.
    pub reviews: u64,
}

/// What the job reports.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Data rows read.
    pub rows: u64,
    /// Rows that matched the criteria.
    pub matched: u64,
    /// All matches together.
    pub overall: Group,
    /// Matches per city, by name.
    pub by_city: BTreeMap<String, Group>,
    /// Matches per category, by name.
    pub by_category: BTreeMap<String, Group>,
}

struct Columns {
    category: usize,
    city: usize,
    rating: usize,
    reviews: usize,
    price_level: usize,
}

#[derive(Default)]
struct Acc {
    count: u64,
    rating_sum: f64,
    reviews: u64,
}

impl Acc {
    fn add(&mut self, rating: f64, reviews: u64) {
        self.count += 1;
        self.rating_sum += rating;
        self.reviews += reviews;
    }

    fn group(&self) -> Group {
        Group {
            count: self.count,
            mean_rating: if self.count == 0 {
                0.0
            } else {
                self.rating_sum / self.count as f64
            },
            reviews: self.reviews,
        }
    }
}

fn one_of(list: &Option<Vec<String>>, value: &str) -> bool {
    list.as_ref()
        .is_none_or(|l| l.iter().any(|v| v.eq_ignore_ascii_case(value)))
}

/// Reads the CSV from `input`, writes the matching rows (header included) to `matches`, and
/// returns the summary. Errors name the line and the column.
pub fn process(
    criteria: &Criteria,
    input: impl Read,
    matches: impl Write,
) -> Result<Summary, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| format!("reading the header row: {e}"))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("the header row has no `{name}` column"))
    };
    let c = Columns {
        category: col("category")?,
        city: col("city")?,
        rating: col("rating")?,
        reviews: col("reviews")?,
        price_level: col("price_level")?,
    };
    col("name")?;
    let mut writer = csv::Writer::from_writer(matches);
    writer
        .write_record(&headers)
        .map_err(|e| format!("writing the matches: {e}"))?;
    let (mut rows, mut overall) = (0u64, Acc::default());
    let mut by_city: BTreeMap<String, Acc> = BTreeMap::new();
    let mut by_category: BTreeMap<String, Acc> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("reading the CSV: {e}"))?;
        rows += 1;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize, name: &str| -> Result<&str, String> {
            Ok(record
                .get(i)
                .ok_or_else(|| format!("line {line}: no `{name}`"))?
                .trim())
        };
        let number = |i: usize, name: &str| -> Result<f64, String> {
            let text = field(i, name)?;
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("line {line}: `{name}` is {text:?}, not a number"))
        };
        let rating = number(c.rating, "rating")?;
        if !(0.0..=5.0).contains(&rating) {
            return Err(format!("line {line}: `rating` is {rating}, outside 0–5"));
        }
        let reviews_text = field(c.reviews, "reviews")?;
        let reviews: u64 = reviews_text.parse().map_err(|_| {
            format!("line {line}: `reviews` is {reviews_text:?}, not a whole number")
        })?;
        let price = number(c.price_level, "price_level")?;
        let (city, category) = (field(c.city, "city")?, field(c.category, "category")?);
        let pass = one_of(&criteria.categories, category)
            && one_of(&criteria.cities, city)
            && criteria.min_rating.is_none_or(|m| rating >= m)
            && criteria.min_reviews.is_none_or(|m| reviews >= m)
            && criteria.max_price_level.is_none_or(|m| price <= m as f64);
        if !pass {
            continue;
        }
        overall.add(rating, reviews);
        by_city
            .entry(city.to_string())
            .or_default()
            .add(rating, reviews);
        by_category
            .entry(category.to_string())
            .or_default()
            .add(rating, reviews);
        writer
            .write_record(&record)
            .map_err(|e| format!("writing the matches: {e}"))?;
    }
    writer
        .flush()
        .map_err(|e| format!("writing the matches: {e}"))?;
    Ok(Summary {
        rows,
        matched: overall.count,
        overall: overall.group(),
        by_city: by_city
            .iter()
            .map(|(k, v)| (k.clone(), v.group()))
            .collect(),
        by_category: by_category
            .iter()
            .map(|(k, v)| (k.clone(), v.group()))
            .collect(),
    })
}
