//! The REST routes of the catalog, compiled once: each RPC's template, the
//! request fields its variables and body bind, and the lookup that picks the
//! route of a request.
use std::sync::Arc;

use http::Method;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::template::{Binding, PathTemplate, Rank};
use crate::catalog::{Catalog, MethodInfo};

/// Where the HTTP body goes in the request message.
#[derive(Debug, Clone)]
pub(crate) enum BodyRule {
    /// No body (GET, DELETE, or a rule without `body`).
    None,
    /// `body: "*"`: the body is the request, less the path fields.
    Whole,
    /// `body: "<field>"`: the body is that top-level field.
    Field(FieldDescriptor),
}

/// One REST route.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The RPC.
    pub(crate) method: Arc<MethodInfo>,
    /// HTTP method.
    pub(crate) verb: Method,
    /// Path template.
    pub(crate) template: PathTemplate,
    /// Body binding.
    pub(crate) body: BodyRule,
    /// The field each template variable sets, in template order.
    pub(crate) path_fields: Vec<Vec<FieldDescriptor>>,
}

impl Route {
    /// Compiles the route of one RPC; `Ok(None)` when it declares none.
    pub(crate) fn compile(method: &Arc<MethodInfo>) -> Result<Option<Self>, String> {
        let Some(rule) = &method.http else {
            return Ok(None);
        };
        let descriptor = &method.descriptor;
        if descriptor.is_client_streaming() || descriptor.is_server_streaming() {
            return Err("streaming RPCs cannot be transcoded to REST".into());
        }
        let template = PathTemplate::parse(&rule.template).map_err(|e| e.to_string())?;
        let input = descriptor.input();
        let path_fields = template
            .variables()
            .iter()
            .map(|variable| {
                let fields = resolve(&input, &variable.field_path)?;
                match fields.last() {
                    Some(last) if last.kind() == Kind::String && !last.is_list() => Ok(fields),
                    _ => Err(format!(
                        "path variable `{}` must be a singular string field",
                        variable.field_path.join(".")
                    )),
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        let body = match rule.body.as_str() {
            "" => BodyRule::None,
            _ if rule.verb == Method::GET || rule.verb == Method::DELETE => {
                return Err(format!("{} routes carry no body", rule.verb));
            }
            "*" => BodyRule::Whole,
            name => BodyRule::Field(
                input
                    .get_field_by_name(name)
                    .ok_or_else(|| format!("body field `{name}` is not in {}", input.name()))?,
            ),
        };
        Ok(Some(Self {
            method: method.clone(),
            verb: rule.verb.clone(),
            template,
            body,
            path_fields,
        }))
    }

    /// Whether `fields` is, contains or is inside a path-bound field.
    pub(crate) fn is_path_bound(&self, fields: &[FieldDescriptor]) -> bool {
        self.path_fields.iter().any(|bound| {
            let n = bound.len().min(fields.len());
            bound[..n] == fields[..n]
        })
    }
}

/// Resolves a path of proto field names through singular message fields.
fn resolve(message: &MessageDescriptor, path: &[String]) -> Result<Vec<FieldDescriptor>, String> {
    let mut message = message.clone();
    let mut fields = Vec::with_capacity(path.len());
    for (i, name) in path.iter().enumerate() {
        let field = message
            .get_field_by_name(name)
            .ok_or_else(|| format!("field `{}` is not in {}", path.join("."), message.name()))?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(inner) if !field.is_list() && !field.is_map() => message = inner,
                _ => return Err(format!("`{name}` is not a singular message field")),
            }
        }
        fields.push(field);
    }
    Ok(fields)
}

/// Every route, and the choice among them.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

/// The answer of a lookup.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// The route, with the values of its variables.
    Found(&'a Route, Vec<Binding>),
    /// The path is served, with other methods.
    WrongMethod(Vec<Method>),
    /// No route has this path.
    NotFound,
}

impl RouteTable {
    /// Compiles the route of every RPC that declares one. A route that does
    /// not compile is logged and left out: one bad contract must not take the
    /// REST door down for every other RPC (the catalog tests pin that every
    /// Rapport route compiles).
    pub(crate) fn new(catalog: &Catalog) -> Self {
        let mut routes: Vec<Route> = Vec::new();
        for method in catalog.methods() {
            match Route::compile(method) {
                Ok(Some(route)) => {
                    if let Some(other) = routes.iter().find(|r| {
                        r.verb == route.verb
                            && r.template.segments() == route.template.segments()
                            && r.template.verb() == route.template.verb()
                    }) {
                        tracing::error!(
                            rpc = %method.path,
                            other = %other.method.path,
                            "REST route is declared twice; the second is not served"
                        );
                        continue;
                    }
                    routes.push(route);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(rpc = %method.path, %error, "REST route does not compile; not served");
                }
            }
        }
        Self { routes }
    }

    /// Every route, in catalog order.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route of a request: among the templates matching the path, the
    /// most specific one (see [`Rank`]) that accepts the HTTP method. A path
    /// that ends in a known custom verb addresses that custom method only, so
    /// `GET /v1/customers/1:erase` is [`Lookup::WrongMethod`] rather than a
    /// read of the resource `customers/1:erase`.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Lookup<'_> {
        let matches: Vec<(&Route, Vec<Binding>)> = self
            .routes
            .iter()
            .filter_map(|route| Some((route, route.template.matches(path)?)))
            .collect();
        let candidates: Vec<(Rank, &Method)> = matches
            .iter()
            .map(|(route, _)| (route.template.rank(), &route.verb))
            .collect();
        match pick(&candidates, method) {
            Pick::Route(i) => match matches.into_iter().nth(i) {
                Some((route, bindings)) => Lookup::Found(route, bindings),
                None => Lookup::NotFound,
            },
            Pick::WrongMethod(allowed) => Lookup::WrongMethod(allowed),
            Pick::None => Lookup::NotFound,
        }
    }
}

/// The choice among matching templates, by index.
#[derive(Debug, PartialEq, Eq)]
enum Pick {
    Route(usize),
    WrongMethod(Vec<Method>),
    None,
}

/// Picks among the `(rank, method)` of the templates matching one path.
fn pick(candidates: &[(Rank, &Method)], method: &Method) -> Pick {
    let has_verb = |(rank, _): &&(Rank, &Method)| rank.0;
    let verb_only = candidates.iter().any(|c| has_verb(&c));
    let eligible: Vec<(usize, &(Rank, &Method))> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !verb_only || has_verb(c))
        .collect();
    if eligible.is_empty() {
        return Pick::None;
    }
    let best = eligible
        .iter()
        .filter(|(_, (_, m))| *m == method)
        .max_by_key(|(i, (rank, _))| (*rank, std::cmp::Reverse(*i)));
    match best {
        Some((i, _)) => Pick::Route(*i),
        None => {
            let mut allowed: Vec<Method> = Vec::new();
            for (_, (_, m)) in &eligible {
                if !allowed.contains(m) {
                    allowed.push((*m).clone());
                }
            }
            Pick::WrongMethod(allowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let catalog = Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET).unwrap();
        RouteTable::new(&catalog)
    }

    #[test]
    fn every_declared_route_compiles() {
        let catalog = Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET).unwrap();
        for method in catalog.methods().filter(|m| m.http.is_some()) {
            Route::compile(method).unwrap_or_else(|e| panic!("{}: {e}", method.path));
        }
        let declared = catalog.methods().filter(|m| m.http.is_some()).count();
        assert_eq!(table().routes().len(), declared);
    }

    #[test]
    fn requests_find_their_rpc() {
        let table = table();
        let rpc = |method: Method, path: &str| match table.find(&method, path) {
            Lookup::Found(route, bindings) => Ok((
                route.method.name.clone(),
                bindings.into_iter().map(|b| b.value).collect::<Vec<_>>(),
            )),
            Lookup::WrongMethod(allowed) => Err(format!("405 {allowed:?}")),
            Lookup::NotFound => Err("404".to_owned()),
        };
        let found = |name: &str, values: &[&str]| {
            Ok((
                name.to_owned(),
                values.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            ))
        };
        assert_eq!(
            rpc(Method::GET, "/v1/customers"),
            found("ListCustomers", &[])
        );
        assert_eq!(
            rpc(Method::POST, "/v1/customers"),
            found("CreateCustomer", &[])
        );
        assert_eq!(
            rpc(Method::GET, "/v1/customers:search"),
            found("SearchCustomers", &[])
        );
        assert_eq!(
            rpc(Method::GET, "/v1/customers/c1"),
            found("GetCustomer", &["customers/c1"])
        );
        assert_eq!(
            rpc(Method::PATCH, "/v1/customers/c1"),
            found("UpdateCustomer", &["customers/c1"])
        );
        assert_eq!(
            rpc(Method::POST, "/v1/customers/c1:setConsent"),
            found("SetConsent", &["customers/c1"])
        );
        assert_eq!(
            rpc(Method::GET, "/v1/customers/c1:export"),
            found("ExportCustomerData", &["customers/c1"])
        );
        assert_eq!(
            rpc(Method::GET, "/v1/customers/c1/consentEvents"),
            found("ListConsentEvents", &["customers/c1"])
        );
        assert_eq!(
            rpc(Method::POST, "/v1/apiKeys/k1:revoke"),
            found("RevokeApiKey", &["apiKeys/k1"])
        );
        // A known custom verb with the wrong method is a 405, not a GET of
        // the resource `customers/c1:erase`.
        assert_eq!(
            rpc(Method::GET, "/v1/customers/c1:erase"),
            Err("405 [POST]".to_owned())
        );
        assert_eq!(
            rpc(Method::DELETE, "/v1/customers"),
            Err("405 [POST, GET]".to_owned())
        );
        assert_eq!(rpc(Method::GET, "/v1/orders"), Err("404".to_owned()));
        assert_eq!(
            rpc(Method::GET, "/v1/customers/c1/x"),
            Err("404".to_owned())
        );
        assert_eq!(rpc(Method::GET, "/"), Err("404".to_owned()));
    }

    #[test]
    fn the_most_specific_template_with_the_method_wins() {
        let rank = |t: &str| PathTemplate::parse(t).unwrap().rank();
        let (get, post) = (Method::GET, Method::POST);
        let resource = rank("/v1/{name=customers/*}");
        let literal = rank("/v1/customers/me");
        let erase = rank("/v1/{name=customers/*}:erase");
        // A literal route beats a variable one for its own method only:
        // `customers/me` is still a resource id for the methods it lacks.
        assert_eq!(
            pick(&[(resource, &get), (literal, &get)], &get),
            Pick::Route(1)
        );
        assert_eq!(
            pick(&[(resource, &get), (literal, &post)], &get),
            Pick::Route(0)
        );
        // A custom verb never falls back to a verb-less route.
        assert_eq!(
            pick(&[(resource, &get), (erase, &post)], &get),
            Pick::WrongMethod(vec![Method::POST])
        );
        assert_eq!(
            pick(&[(resource, &get), (erase, &post)], &post),
            Pick::Route(1)
        );
        assert_eq!(pick(&[], &get), Pick::None);
        // Same template, two methods: both are allowed.
        assert_eq!(
            pick(&[(literal, &get), (literal, &post)], &Method::DELETE),
            Pick::WrongMethod(vec![Method::GET, Method::POST])
        );
    }
}
