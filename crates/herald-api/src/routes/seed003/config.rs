//! Seed 003's configuration routes: `configure` (a tenant and its default
//! endpoint), `configs`, and deleting a tenant's configuration.

use super::*;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `Bearer`, `ApiKey` or `Basic`.
    pub auth_type: String,
    /// The token, the key, or `username:password`.
    pub token: String,
    pub header_name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigureSpec {
    pub tenant_id: String,
    pub base_url: String,
    pub secret_key: String,
    pub default_headers: Option<BTreeMap<String, String>>,
    pub retry_policy: Option<RetryPolicySpec>,
    pub timeout_seconds: Option<f64>,
    pub enabled_events: Option<Vec<String>>,
    pub active: Option<bool>,
    pub auth_config: Option<AuthConfig>,
}

fn auth(config: Option<AuthConfig>) -> ApiResult<TargetAuth> {
    let Some(c) = config else {
        return Ok(TargetAuth::None);
    };
    Ok(match c.auth_type.to_ascii_lowercase().as_str() {
        "bearer" => TargetAuth::Bearer { token: c.token },
        "apikey" | "api_key" => TargetAuth::ApiKey {
            header_name: c.header_name.unwrap_or_else(|| "X-API-Key".into()),
            key: c.token,
        },
        "basic" => {
            let (username, password) = c.token.split_once(':').ok_or_else(|| {
                ValidationError::new("auth_config.token", "must be username:password for Basic")
            })?;
            TargetAuth::Basic {
                username: username.into(),
                password: password.into(),
            }
        }
        _ => {
            return Err(ValidationError::new(
                "auth_config.auth_type",
                "must be Bearer, ApiKey or Basic",
            )
            .into())
        }
    })
}

/// The endpoint settings `configure` writes.
fn endpoint_spec(spec: ConfigureSpec) -> ApiResult<EndpointSpec> {
    let mut headers = spec.default_headers.unwrap_or_default();
    let user_agent = headers
        .keys()
        .find(|k| k.eq_ignore_ascii_case("user-agent"))
        .cloned()
        .and_then(|k| headers.remove(&k));
    let json = json!({
        "url": spec.base_url,
        "description": DEFAULT_ENDPOINT,
        "signature": {"scheme": "hmac-sha256-prefixed", "header": "X-Webhook-Signature", "timestamp_header": "X-Timestamp", "secret": spec.secret_key},
        "event_types": spec.enabled_events,
        "active": spec.active.unwrap_or(true),
        "headers": headers,
    });
    let mut endpoint: EndpointSpec =
        serde_json::from_value(json).map_err(|e| ApiError::BadJson {
            message: e.to_string(),
            field: None,
        })?;
    endpoint.retry_policy = spec.retry_policy.map(Some);
    endpoint.timeout_seconds = spec.timeout_seconds;
    endpoint.user_agent = user_agent.map(Some);
    endpoint.auth = Some(auth(spec.auth_config)?);
    Ok(endpoint)
}

pub(super) async fn default_endpoint(
    state: &AppState,
    tenant: &TenantId,
) -> ApiResult<Option<Endpoint>> {
    let all = state.engine.store().tenant_endpoints(tenant).await?;
    Ok(all.into_iter().find(|e| e.description == DEFAULT_ENDPOINT))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConfigOut {
    pub tenant_id: String,
    pub endpoint_id: String,
    pub base_url: String,
    pub enabled_events: Vec<String>,
    pub active: bool,
    pub timeout_seconds: f64,
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<Value>,
    pub default_headers: BTreeMap<String, String>,
    /// The auth type only; the token is never shown.
    pub auth_type: Option<&'static str>,
}

fn config_out(e: &Endpoint) -> ConfigOut {
    ConfigOut {
        tenant_id: e.tenant_id.to_string(),
        endpoint_id: e.id.to_string(),
        base_url: e.url.clone(),
        enabled_events: e
            .event_types
            .iter()
            .map(|p| p.as_str().to_string())
            .collect(),
        active: e.active,
        timeout_seconds: e.timeout_seconds,
        retry_policy: e
            .retry_policy
            .as_ref()
            .and_then(|p| serde_json::to_value(p).ok()),
        default_headers: e.headers.clone(),
        auth_type: match e.auth {
            TargetAuth::None => None,
            TargetAuth::Bearer { .. } => Some("Bearer"),
            TargetAuth::ApiKey { .. } => Some("ApiKey"),
            TargetAuth::Basic { .. } => Some("Basic"),
        },
    }
}

#[utoipa::path(post, path = "/api/v1/webhooks/configure", request_body = ConfigureSpec, responses((status = 200, body = ConfigOut)))]
pub async fn configure(
    state: State,
    ValidJson(spec): ValidJson<ConfigureSpec>,
) -> ApiResult<Json<ConfigOut>> {
    let tenant = TenantId::parse(&spec.tenant_id, "tenant_id")?;
    let now = chrono::Utc::now();
    if state.engine.store().get_tenant(&tenant).await?.is_none() {
        let ms = now.timestamp_millis();
        let created = state
            .engine
            .store()
            .create_tenant(Tenant {
                id: tenant.clone(),
                name: tenant.to_string(),
                retry_policy: None,
                created_at: ms,
                updated_at: ms,
            })
            .await;
        match created {
            Ok(()) | Err(herald_store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let endpoint_spec = endpoint_spec(spec)?;
    let endpoint = match default_endpoint(&state, &tenant).await? {
        Some(mut existing) => {
            existing.apply(endpoint_spec, now)?;
            state.engine.update_endpoint(existing.clone()).await?;
            existing
        }
        None => {
            let created = Endpoint::create(
                tenant,
                endpoint_spec,
                &state.engine.config().endpoint_defaults,
                now,
            )?;
            state.engine.create_endpoint(created.clone()).await?;
            created
        }
    };
    Ok(Json(config_out(&endpoint)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConfigsOut {
    pub configs: Vec<ConfigOut>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/configs", responses((status = 200, body = ConfigsOut)))]
pub async fn configs(state: State) -> ApiResult<Json<ConfigsOut>> {
    let mut configs = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .engine
            .store()
            .list_tenants(PageRequest { limit: 500, cursor })
            .await?;
        for tenant in &page.data {
            if let Some(e) = default_endpoint(&state, &tenant.id).await? {
                configs.push(config_out(&e));
            }
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok(Json(ConfigsOut { configs }))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/config/{tenant_id}", responses((status = 204), (status = 404)))]
pub async fn remove(state: State, Path(tid): Path<String>) -> ApiResult<StatusCode> {
    let tenant = crate::routes::tenant(&state, &tid).await?;
    let endpoint = default_endpoint(&state, &tenant.id)
        .await?
        .ok_or(ApiError::NotFound("configuration"))?;
    state
        .engine
        .delete_endpoint(&tenant.id, &endpoint.id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
