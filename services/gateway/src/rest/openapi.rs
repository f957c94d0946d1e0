//! The OpenAPI 3.0.3 document of the REST routes, generated from the same
//! descriptors and routes the transcoder serves, so it cannot drift from
//! what the gateway accepts. Schemas follow the proto3 JSON mapping;
//! descriptions are the contracts' comments.
use std::collections::{BTreeMap, HashMap, HashSet};

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    ServiceDescriptor,
};
use prost_types::FileDescriptorProto;
use serde_json::{Map, Value as Json, json};

use super::{
    route::{BodyRule, Route, RouteTable},
    template::Segment,
    transcode::is_well_known,
};

const SCHEMAS: &str = "#/components/schemas/";

/// Generates the document of the routes of the services `routed` accepts:
/// a service in the contracts that this gateway does not route (the bench's
/// echo service, in most deployments) is not advertised.
pub(crate) fn document(
    table: &RouteTable,
    pool: &DescriptorPool,
    routed: impl Fn(&str) -> bool,
) -> Json {
    let mut schemas = Schemas::new(pool);
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut tags: BTreeMap<String, Json> = BTreeMap::new();
    let routes: Vec<&Route> = table
        .routes()
        .iter()
        .filter(|r| routed(&r.method.service))
        .collect();

    // operationId is the method name unless two services share it.
    let mut name_counts: HashMap<&str, usize> = HashMap::new();
    for route in &routes {
        *name_counts.entry(route.method.name.as_str()).or_default() += 1;
    }

    for route in routes {
        let service = route.method.descriptor.parent_service().clone();
        tags.entry(service.name().to_owned()).or_insert_with(|| {
            let mut tag = Map::new();
            tag.insert("name".into(), json!(service.name()));
            if let Some(doc) = service_comment(&service) {
                tag.insert("description".into(), json!(doc));
            }
            Json::Object(tag)
        });
        let operation_id = if name_counts[route.method.name.as_str()] > 1 {
            format!("{}_{}", service.name(), route.method.name)
        } else {
            route.method.name.clone()
        };
        let (path, path_parameters) = openapi_path(route);
        let operation = operation(route, operation_id, path_parameters, &mut schemas);
        let item = paths.entry(path).or_default();
        item.insert(route.verb.as_str().to_ascii_lowercase(), operation);
    }

    let mut components = schemas.finish();
    components.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Rapport API",
            "version": "v1",
            "description": "REST/JSON access to the Rapport gRPC APIs, transcoded by the gateway. \
                JSON follows the proto3 JSON mapping: lowerCamelCase field names (original \
                names are accepted too), enums by name, 64-bit integers as strings, \
                timestamps in RFC 3339. Errors use Google's JSON error format.",
        },
        // Relative: the document is served by the gateway it describes, so
        // a client generated from `GET /openapi.json` calls where it came from.
        "servers": [{"url": "/", "description": "The gateway serving this document."}],
        "tags": tags.into_values().collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {
                "Error": {
                    "description": "An error: `error.status` is the canonical gRPC code name, \
                        `error.details` the google.rpc details (ErrorInfo, BadRequest, RetryInfo…).",
                    "content": {"application/json": {"schema": {"$ref": format!("{SCHEMAS}Error")}}},
                },
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key secret or a JWT, as `Authorization: Bearer <token>`.",
                },
                "apiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "An API key secret.",
                },
            },
        },
    })
}

/// The OpenAPI path of a route and its path parameters. OpenAPI parameters
/// cannot hold `/`, so a resource name variable is expanded into its
/// segments: `/v1/{name=customers/*}:setConsent` becomes
/// `/v1/customers/{customer}:setConsent`, with the parameter named after its
/// collection, and a generated client fills in the id only.
fn openapi_path(route: &Route) -> (String, Vec<Json>) {
    let template = &route.template;
    let mut path = String::new();
    let mut parameters = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut previous_literal: Option<&str> = None;
    for (i, segment) in template.segments().iter().enumerate() {
        path.push('/');
        let variable = template.variable_at(i);
        let name = match segment {
            Segment::Literal(literal) => {
                path.push_str(literal);
                previous_literal = Some(literal);
                continue;
            }
            Segment::Single | Segment::Multi => match (previous_literal, variable) {
                (Some(collection), Some(_)) => singular(collection),
                (None, Some(variable)) => variable.field_path.join("_"),
                (_, None) => format!("segment{i}"),
            },
        };
        previous_literal = None;
        let mut unique = name.clone();
        let mut n = 2;
        while !names.insert(unique.clone()) {
            unique = format!("{name}{n}");
            n += 1;
        }
        path.push('{');
        path.push_str(&unique);
        path.push('}');
        let mut description = match variable {
            Some(variable) => format!(
                "The `{unique}` segment of the resource name in `{}` (`{}`).",
                variable.field_path.join("."),
                resource_pattern(variable, &unique)
            ),
            None => "A path segment; its value is not used.".to_owned(),
        };
        if *segment == Segment::Multi {
            description.push_str(" It may span several segments separated by `/`.");
        }
        parameters.push(json!({
            "name": unique,
            "in": "path",
            "required": true,
            "description": description,
            "schema": {"type": "string"},
        }));
    }
    if let Some(verb) = template.verb() {
        path.push(':');
        path.push_str(verb);
    }
    (path, parameters)
}

/// `customers/{customer}` for a variable `{name=customers/*}`.
fn resource_pattern(variable: &super::template::Variable, parameter: &str) -> String {
    variable
        .pattern
        .iter()
        .map(|s| match s {
            Segment::Literal(l) => l.clone(),
            Segment::Single | Segment::Multi => format!("{{{parameter}}}"),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `customers` → `customer`, `apiKeys` → `apiKey`, `policies` → `policy`,
/// `inboxes` → `inbox`.
fn singular(collection: &str) -> String {
    if let Some(stem) = collection.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = collection.strip_suffix("es")
        && ["x", "ch", "sh", "ss", "z"]
            .iter()
            .any(|end| stem.ends_with(end))
    {
        stem.to_owned()
    } else if let Some(stem) = collection.strip_suffix('s')
        && !stem.is_empty()
    {
        stem.to_owned()
    } else {
        collection.to_owned()
    }
}

fn operation(
    route: &Route,
    operation_id: String,
    mut parameters: Vec<Json>,
    schemas: &mut Schemas,
) -> Json {
    let method = &route.method;
    let input = method.descriptor.input();
    let mut op = Map::new();
    op.insert("operationId".into(), json!(operation_id));
    if let Some(doc) = method_comment(&method.descriptor) {
        op.insert("summary".into(), json!(first_sentence(&doc)));
        op.insert("description".into(), json!(doc));
    }
    op.insert(
        "tags".into(),
        json!([method.descriptor.parent_service().name()]),
    );

    if !matches!(route.body, BodyRule::Whole) {
        let mut stack = vec![input.full_name().to_owned()];
        query_parameters(
            route,
            &input,
            &mut Vec::new(),
            "",
            &mut stack,
            schemas,
            &mut parameters,
        );
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), Json::Array(parameters));
    }

    let body_schema = match &route.body {
        BodyRule::None => None,
        BodyRule::Whole => {
            // The path fields are in the URL; leave them out of the body.
            let bound: Vec<FieldDescriptor> = route
                .path_fields
                .iter()
                .filter_map(|f| f.first().cloned())
                .collect();
            Some((schemas.message_schema(&input, &bound), None))
        }
        BodyRule::Field(field) => Some((schemas.field_schema(field), field_comment(field))),
    };
    if let Some((schema, description)) = body_schema {
        let mut body = Map::new();
        if let Some(description) = description {
            body.insert("description".into(), json!(description));
        }
        body.insert("required".into(), json!(true));
        body.insert(
            "content".into(),
            json!({"application/json": {"schema": schema}}),
        );
        op.insert("requestBody".into(), Json::Object(body));
    }

    let output = method.descriptor.output();
    op.insert(
        "responses".into(),
        json!({
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": schemas.message_ref(&output)}},
            },
            "default": {"$ref": "#/components/responses/Error"},
        }),
    );
    op.insert(
        "security".into(),
        json!([{"bearerAuth": []}, {"apiKeyAuth": []}]),
    );
    if let Some(scope) = &method.scope {
        op.insert("x-required-scope".into(), json!(scope));
    }
    Json::Object(op)
}

/// Query parameters: the fields neither the path nor the body binds, nested
/// message fields flattened to dotted lowerCamelCase names. Maps and lists of
/// messages cannot be expressed in a query string and are left out.
fn query_parameters(
    route: &Route,
    message: &MessageDescriptor,
    fields: &mut Vec<FieldDescriptor>,
    prefix: &str,
    stack: &mut Vec<String>,
    schemas: &mut Schemas,
    out: &mut Vec<Json>,
) {
    for field in message.fields() {
        if fields.is_empty()
            && let BodyRule::Field(body) = &route.body
            && *body == field
        {
            continue;
        }
        fields.push(field.clone());
        let exactly_bound = route.path_fields.contains(fields);
        let name = if prefix.is_empty() {
            field.json_name().to_owned()
        } else {
            format!("{prefix}.{}", field.json_name())
        };
        match field.kind() {
            _ if exactly_bound || field.is_map() => {}
            Kind::Message(inner) if !is_query_scalar(&inner) => {
                // Any, Struct and Value have no query form; other messages
                // are flattened, once per type on the way down.
                if !field.is_list()
                    && !is_well_known(&inner)
                    && !stack.iter().any(|s| s == inner.full_name())
                {
                    stack.push(inner.full_name().to_owned());
                    query_parameters(route, &inner, fields, &name, stack, schemas, out);
                    stack.pop();
                }
            }
            _ if route.is_path_bound(fields) => {}
            kind => {
                let item = schemas.kind_schema(&kind);
                let schema = if field.is_list() {
                    json!({"type": "array", "items": item})
                } else {
                    item
                };
                let mut parameter = Map::new();
                parameter.insert("name".into(), json!(name));
                parameter.insert("in".into(), json!("query"));
                if let Some(doc) = field_comment(&field) {
                    parameter.insert("description".into(), json!(doc));
                }
                if field.is_list() {
                    parameter.insert("style".into(), json!("form"));
                    parameter.insert("explode".into(), json!(true));
                }
                parameter.insert("schema".into(), schema);
                out.push(Json::Object(parameter));
            }
        }
        fields.pop();
    }
}

fn is_query_scalar(message: &MessageDescriptor) -> bool {
    is_well_known(message)
        && !matches!(
            message.full_name(),
            "google.protobuf.Any"
                | "google.protobuf.Struct"
                | "google.protobuf.Value"
                | "google.protobuf.ListValue"
        )
}

/// `components.schemas`, filled as messages and enums are referenced.
struct Schemas {
    schemas: BTreeMap<String, Json>,
    /// Schema name by full protobuf name.
    names: HashMap<String, String>,
}

/// Schema names for every message and enum of `pool`: the name within its
/// package (`Customer`, `Customer.Email`) where no other type shares it,
/// else the full name less the `rapport.` prefix (`profiles.v1.Customer`).
/// Generated clients then have classes named `Customer`, not
/// `RapportProfilesV1Customer`; names never depend on which routes exist.
fn schema_names(pool: &DescriptorPool) -> HashMap<String, String> {
    let types: Vec<(String, String)> = pool
        .all_messages()
        .map(|m| (m.full_name().to_owned(), m.package_name().to_owned()))
        .chain(
            pool.all_enums()
                .map(|e| (e.full_name().to_owned(), e.package_name().to_owned())),
        )
        .map(|(full, package)| {
            let short = full
                .strip_prefix(package.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or(&full)
                .to_owned();
            (full, short)
        })
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    // The error schema's name is taken.
    counts.insert("Error", 1);
    for (_, short) in &types {
        *counts.entry(short.as_str()).or_default() += 1;
    }
    types
        .iter()
        .map(|(full, short)| {
            let name = if counts[short.as_str()] == 1 {
                short.clone()
            } else {
                full.strip_prefix("rapport.").unwrap_or(full).to_owned()
            };
            (full.clone(), name)
        })
        .collect()
}

impl Schemas {
    fn new(pool: &DescriptorPool) -> Self {
        Self {
            schemas: BTreeMap::new(),
            names: schema_names(pool),
        }
    }

    fn name_of(&self, full_name: &str) -> String {
        self.names
            .get(full_name)
            .cloned()
            .unwrap_or_else(|| full_name.to_owned())
    }

    fn finish(self) -> Map<String, Json> {
        self.schemas.into_iter().collect()
    }

    /// A `$ref` to a message's schema, generating it on first use (a
    /// placeholder first, so recursive messages terminate).
    fn message_ref(&mut self, message: &MessageDescriptor) -> Json {
        if let Some(schema) = well_known_schema(message) {
            return schema;
        }
        let name = self.name_of(message.full_name());
        if !self.schemas.contains_key(&name) {
            self.schemas.insert(name.clone(), Json::Null);
            let schema = self.message_schema(message, &[]);
            self.schemas.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("{SCHEMAS}{name}") })
    }

    fn enum_ref(&mut self, enumeration: &EnumDescriptor) -> Json {
        let name = self.name_of(enumeration.full_name());
        if !self.schemas.contains_key(&name) {
            let values: Vec<String> = enumeration.values().map(|v| v.name().to_owned()).collect();
            let mut doc = comment(
                enumeration.parent_file().file_descriptor_proto(),
                enumeration.path(),
            )
            .unwrap_or_default();
            for value in enumeration.values() {
                let value_doc = comment(
                    enumeration.parent_file().file_descriptor_proto(),
                    value.path(),
                )
                .unwrap_or_default();
                doc.push_str(&format!("\n- `{}`: {}", value.name(), value_doc));
            }
            self.schemas.insert(
                name.clone(),
                json!({"type": "string", "enum": values, "description": doc.trim()}),
            );
        }
        json!({ "$ref": format!("{SCHEMAS}{name}") })
    }

    /// An object schema of a message, less `exclude`.
    fn message_schema(&mut self, message: &MessageDescriptor, exclude: &[FieldDescriptor]) -> Json {
        let mut properties = Map::new();
        for field in message.fields() {
            if exclude.contains(&field) {
                continue;
            }
            let schema = self.field_schema(&field);
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut doc = comment(
            message.parent_file().file_descriptor_proto(),
            message.path(),
        )
        .unwrap_or_default();
        for oneof in message.oneofs().filter(|o| !o.is_synthetic()) {
            let members: Vec<String> = oneof
                .fields()
                .map(|f| format!("`{}`", f.json_name()))
                .collect();
            doc.push_str(&format!(
                "\n\nAt most one of {} is set.",
                members.join(", ")
            ));
        }
        let mut schema = Map::new();
        schema.insert("type".into(), json!("object"));
        if !doc.trim().is_empty() {
            schema.insert("description".into(), json!(doc.trim()));
        }
        schema.insert("properties".into(), Json::Object(properties));
        Json::Object(schema)
    }

    fn field_schema(&mut self, field: &FieldDescriptor) -> Json {
        let schema = match field.kind() {
            Kind::Message(entry) if field.is_map() => {
                let value = self.kind_schema(&entry.map_entry_value_field().kind());
                json!({"type": "object", "additionalProperties": value})
            }
            kind if field.is_list() => json!({"type": "array", "items": self.kind_schema(&kind)}),
            kind => self.kind_schema(&kind),
        };
        let doc = field_comment(field);
        let output_only = doc.as_deref().is_some_and(|d| d.contains("Output only"));
        if doc.is_none() {
            return schema;
        }
        // OpenAPI 3.0 ignores the siblings of a `$ref`: wrap it to keep the
        // field's own description.
        let mut schema = match schema {
            Json::Object(map) if map.contains_key("$ref") => {
                let mut wrapper = Map::new();
                wrapper.insert("allOf".into(), json!([map]));
                wrapper
            }
            Json::Object(map) => map,
            other => return other,
        };
        if let Some(doc) = doc {
            schema.insert("description".into(), json!(doc));
        }
        if output_only {
            schema.insert("readOnly".into(), json!(true));
        }
        Json::Object(schema)
    }

    /// The schema of one value of a field kind (proto3 JSON mapping).
    fn kind_schema(&mut self, kind: &Kind) -> Json {
        match kind {
            Kind::Double => json!({"type": "number", "format": "double"}),
            Kind::Float => json!({"type": "number", "format": "float"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX})
            }
            // 64-bit integers are strings in proto3 JSON: a double cannot hold them.
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64"})
            }
            Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "format": "byte"}),
            Kind::Enum(e) => self.enum_ref(e),
            Kind::Message(m) => self.message_ref(m),
        }
    }
}

/// Schemas of the well-known types with their own JSON form.
fn well_known_schema(message: &MessageDescriptor) -> Option<Json> {
    let wrapped = |t: &str, f: Option<&str>| {
        let mut s = json!({"type": t, "nullable": true});
        if let Some(f) = f {
            s["format"] = json!(f);
        }
        s
    };
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({
            "type": "string",
            "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
            "description": "A duration in seconds with up to nine fractional digits, e.g. `1.5s`.",
        }),
        "google.protobuf.FieldMask" => json!({
            "type": "string",
            "description": "Comma-separated field paths, e.g. `displayName,emails`.",
        }),
        "google.protobuf.Any" => any_schema(),
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" => json!({"description": "Any JSON value."}),
        "google.protobuf.ListValue" => json!({"type": "array", "items": {}}),
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.DoubleValue" => wrapped("number", Some("double")),
        "google.protobuf.FloatValue" => wrapped("number", Some("float")),
        "google.protobuf.Int64Value" => wrapped("string", Some("int64")),
        "google.protobuf.UInt64Value" => wrapped("string", Some("uint64")),
        "google.protobuf.Int32Value" => wrapped("integer", Some("int32")),
        "google.protobuf.UInt32Value" => wrapped("integer", Some("int64")),
        "google.protobuf.BoolValue" => wrapped("boolean", None),
        "google.protobuf.StringValue" => wrapped("string", None),
        "google.protobuf.BytesValue" => wrapped("string", Some("byte")),
        _ => return None,
    })
}

fn error_schema() -> Json {
    let codes = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    json!({
        "type": "object",
        "description": "Google's JSON error format.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "status"],
                "properties": {
                    "code": {"type": "integer", "format": "int32", "description": "The HTTP status."},
                    "message": {"type": "string", "description": "A developer-facing message."},
                    "status": {"type": "string", "enum": codes, "description": "The canonical gRPC code."},
                    "details": {
                        "type": "array",
                        "description": "google.rpc error details, each with its `@type`.",
                        "items": any_schema(),
                    },
                },
            },
        },
    })
}

/// `google.protobuf.Any` in JSON: the `@type` URL and the fields of the packed message.
fn any_schema() -> Json {
    json!({
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": true,
    })
}

/// The leading comment at a source path, lines unindented.
fn comment(file: &FileDescriptorProto, path: &[i32]) -> Option<String> {
    let location = file
        .source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn field_comment(field: &FieldDescriptor) -> Option<String> {
    comment(field.parent_file().file_descriptor_proto(), field.path())
}

fn method_comment(method: &MethodDescriptor) -> Option<String> {
    comment(method.parent_file().file_descriptor_proto(), method.path())
}

fn service_comment(service: &ServiceDescriptor) -> Option<String> {
    comment(
        service.parent_file().file_descriptor_proto(),
        service.path(),
    )
}

/// The first sentence, for `summary`.
fn first_sentence(doc: &str) -> String {
    let flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(end) => flat[..=end].to_owned(),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn doc() -> Json {
        let catalog = Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET).unwrap();
        document(&RouteTable::new(&catalog), catalog.pool(), |_| true)
    }

    #[test]
    fn only_routed_services_are_documented_from_where_they_are_served() {
        let catalog = Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET).unwrap();
        let all = document(&RouteTable::new(&catalog), catalog.pool(), |_| true);
        assert!(
            all["paths"]["/v1/echo"].is_object(),
            "the echo route exists"
        );
        let doc = document(&RouteTable::new(&catalog), catalog.pool(), |s| {
            s != "rapport.bench.v1.EchoService"
        });
        assert!(doc["paths"]["/v1/echo"].is_null());
        assert!(doc["paths"]["/v1/customers"].is_object());
        assert_eq!(doc["servers"][0]["url"], "/");
    }

    #[test]
    fn the_readme_rest_tables_match_the_document() {
        let readme = include_str!("../../../../README.md");
        let doc = doc();
        let mut rows = 0;
        for line in readme.lines() {
            // Table rows such as "| `GET /v1/customers/{customer}` | GetCustomer |".
            let Some(route) = line
                .strip_prefix("| `")
                .and_then(|rest| rest.split('`').next())
            else {
                continue;
            };
            let Some((method, path)) = route.split_once(' ') else {
                continue;
            };
            if !path.starts_with("/v1/") {
                continue;
            }
            let path = path.split('?').next().unwrap();
            let op = &doc["paths"][path][method.to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "README route {method} {path} is not in the OpenAPI document"
            );
            rows += 1;
        }
        assert!(rows >= 20, "only {rows} README routes found");
    }

    #[test]
    fn schema_names_are_short_and_unique() {
        let catalog = Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET).unwrap();
        let names = schema_names(catalog.pool());
        assert_eq!(names["rapport.profiles.v1.Customer"], "Customer");
        let distinct: HashSet<&String> = names.values().collect();
        assert_eq!(distinct.len(), names.len(), "two types share a schema name");
        assert!(!distinct.contains(&"Error".to_owned()));
    }

    fn refs<'a>(value: &'a Json, out: &mut Vec<&'a str>) {
        match value {
            Json::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Json::String(r)) => out.push(r),
                        _ => refs(value, out),
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves_and_every_route_is_documented() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(doc["info"]["title"], "Rapport API");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20, "schemas are shared through $ref");
        for r in all {
            let pointer = r.strip_prefix('#').expect("local ref");
            let target = doc.pointer(pointer);
            assert!(
                target.is_some_and(|t| t.is_object()),
                "{r} does not resolve"
            );
        }

        let catalog = Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut operation_ids = HashSet::new();
        for method in catalog.methods() {
            let Some(rule) = &method.http else { continue };
            let route = Route::compile(method).unwrap().unwrap();
            let (path, _) = openapi_path(&route);
            let op = &doc["paths"][&path][rule.verb.as_str().to_ascii_lowercase()];
            assert_eq!(op["operationId"], method.name.as_str(), "{path}");
            assert_eq!(
                op["x-required-scope"],
                method.scope.as_deref().unwrap(),
                "{path}"
            );
            assert!(op["responses"]["200"].is_object());
            assert!(
                operation_ids.insert(method.name.clone()),
                "unique operationId"
            );
            // Every `{param}` of the path is declared, and only those.
            let in_path: HashSet<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split('}').next())
                .collect();
            let declared: HashSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(in_path, declared, "{path}");
        }
    }

    #[test]
    fn resource_names_expand_into_segments() {
        let doc = doc();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v1/customers",
            "/v1/customers:search",
            "/v1/customers/{customer}",
            "/v1/customers/{customer}:setConsent",
            "/v1/customers/{customer}/consentEvents",
            "/v1/apiKeys/{apiKey}:revoke",
        ] {
            assert!(
                paths.contains_key(path),
                "{path} missing: {:?}",
                paths.keys()
            );
        }
        let get = &doc["paths"]["/v1/customers/{customer}"]["get"];
        assert_eq!(get["summary"], "Gets a customer by resource name.");
        assert_eq!(get["security"][0]["bearerAuth"], json!([]));
        let patch = &doc["paths"]["/v1/customers/{customer}"]["patch"];
        assert_eq!(
            patch["requestBody"]["content"]["application/json"]["schema"]["allOf"][0]["$ref"],
            "#/components/schemas/Customer"
        );
        let query: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(query, ["updateMask", "requestId"]);
    }

    #[test]
    fn schemas_follow_the_proto3_json_mapping() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let customer = &schemas["Customer"]["properties"];
        assert_eq!(customer["createTime"]["format"], "date-time");
        assert_eq!(customer["createTime"]["readOnly"], true);
        assert_eq!(customer["emails"]["type"], "array");
        assert_eq!(
            customer["emails"]["items"]["$ref"],
            "#/components/schemas/EmailAddress"
        );
        assert_eq!(customer["attributes"]["type"], "object");
        assert!(customer["attributes"]["additionalProperties"]["$ref"].is_string());
        let attribute = &schemas["AttributeValue"];
        assert_eq!(attribute["properties"]["intValue"]["type"], "string");
        assert_eq!(attribute["properties"]["intValue"]["format"], "int64");
        assert!(
            attribute["description"]
                .as_str()
                .unwrap()
                .contains("At most one of `stringValue`")
        );
        let stage = &schemas["LifecycleStage"];
        assert_eq!(stage["type"], "string");
        assert_eq!(stage["enum"][1], "LIFECYCLE_STAGE_AWARENESS");
        let export = &schemas["ExportCustomerDataResponse"]["properties"];
        assert_eq!(export["data"]["format"], "byte");

        // `*` bodies leave out the fields the path binds.
        let set_consent = &doc["paths"]["/v1/customers/{customer}:setConsent"]["post"];
        let body = &set_consent["requestBody"]["content"]["application/json"]["schema"];
        assert!(body["properties"]["name"].is_null());
        assert!(body["properties"]["channel"].is_object());
        assert!(set_consent["parameters"].as_array().unwrap().len() == 1);

        // Nested and repeated query parameters.
        let lookup = &doc["paths"]["/v1/customers:lookup"]["get"]["parameters"];
        let names: Vec<&str> = lookup
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "email",
                "phone",
                "channelIdentity.channel",
                "channelIdentity.provider",
                "channelIdentity.handle"
            ]
        );
    }

    #[test]
    fn naming_helpers() {
        assert_eq!(singular("customers"), "customer");
        assert_eq!(singular("apiKeys"), "apiKey");
        assert_eq!(singular("policies"), "policy");
        assert_eq!(singular("inboxes"), "inbox");
        assert_eq!(singular("cannedResponses"), "cannedResponse");
        assert_eq!(singular("addresses"), "address");
        assert_eq!(singular("s"), "s");
        assert_eq!(
            first_sentence("Updates the fields. A stale `etag`\nfails."),
            "Updates the fields."
        );
    }
}
