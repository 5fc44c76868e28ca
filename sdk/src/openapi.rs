//! Schemas for the scheduler's OpenAPI document, for the types whose JSON form is text with
//! rules of its own (so their schema says the rule rather than the Rust type's shape), and for
//! the batch manifest, whose JSON form is the contract's, not [`BatchManifest`]'s fields.
//!
//! Every other wire type derives its schema where it is defined (`feature = "openapi"`).

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::batch::RawBatch;
use crate::{BatchManifest, Blake3Hash, Name, Tier, Uri};

fn text(description: &str, pattern: Option<&str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .into()
}

impl PartialSchema for Blake3Hash {
    fn schema() -> RefOr<Schema> {
        text(
            "A BLAKE3 hash: 64 lowercase hex digits",
            Some("^[0-9a-f]{64}$"),
        )
    }
}

impl ToSchema for Blake3Hash {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Blake3")
    }
}

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A task, batch, input or output name: A-Z, a-z, 0-9, '.', '_' and '-', \
                 and neither '.' nor '..'",
            ))
            .pattern(Some("^[A-Za-z0-9._-]+$"))
            .min_length(Some(1))
            .max_length(Some(Name::MAX_LEN))
            .into()
    }
}

impl ToSchema for Name {}

impl PartialSchema for Uri {
    fn schema() -> RefOr<Schema> {
        text(
            "Where bytes are: a path (relative ones resolve beside the manifest), or a \
             file://, s3://, http:// or https:// URL",
            None,
        )
    }
}

impl ToSchema for Uri {}

impl PartialSchema for Tier {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A runner tier; a task of a tier runs on runners of that tier or above",
            ))
            .enum_values(Some(Tier::ALL.map(Tier::as_str)))
            .into()
    }
}

impl ToSchema for Tier {}

/// A batch manifest as submitted: the contract's JSON form, whose tasks are laid over its
/// `defaults` (a [`BatchManifest`] holds them expanded).
impl PartialSchema for BatchManifest {
    fn schema() -> RefOr<Schema> {
        let mut schema = RawBatch::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.description = Some(
                "A batch manifest, version 1 of the job contract: each task is a task \
                 manifest's fields laid over `defaults`"
                    .into(),
            );
        }
        schema
    }
}

impl ToSchema for BatchManifest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <RawBatch as ToSchema>::schemas(schemas);
    }
}
