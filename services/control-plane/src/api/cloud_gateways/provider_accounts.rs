//! `/v2/cloud-gateways/provider-accounts`: the cloud accounts (or the local machine) networks
//! are created in. As in Konnect, the service runs the accounts: every organisation sees the
//! `local` account without creating it, and an operator registers the AWS account a control
//! plane started with `--cloud-provider aws` provisions in (POST and DELETE are for operators
//! only; organisation admins read).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::filters::{self, FilterField, STRING_OPS};
use super::require_fields;
use crate::api::extract::{parse_body, parse_id, JsonBody, PathParams, QueryParams};
use crate::api::paging::{NumberedList, NumberedPage};
use crate::api::timestamps::as_rfc3339;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{CloudProvider, NewProviderAccount, ProviderAccountRecord};

/// The collection path.
pub const COLLECTION: &str = "/v2/cloud-gateways/provider-accounts";
/// One account's path.
pub const ITEM: &str = "/v2/cloud-gateways/provider-accounts/{provider_account_id}";

/// Provider-account routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(COLLECTION, get(list).post(create))
        .route(ITEM, get(show).delete(remove))
}

/// Body of `POST /v2/cloud-gateways/provider-accounts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProviderAccount {
    /// `aws` or `local`.
    pub provider: String,
    /// The 12-digit AWS account id; `local` (the default) for the local provider.
    #[serde(default)]
    pub provider_account_id: Option<String>,
}

/// A provider account as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderAccount {
    /// Fleetgate id (what networks reference).
    pub id: Uuid,
    /// `aws` or `local`.
    pub provider: String,
    /// The AWS account id, or `local`.
    pub provider_account_id: String,
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// Filters of the provider-account list (Konnect's `ProviderAccountsFilterParameters`).
pub const FILTERS: [FilterField; 1] = [FilterField {
    name: "provider",
    ops: STRING_OPS,
    values: None,
}];

impl From<ProviderAccountRecord> for ProviderAccount {
    fn from(r: ProviderAccountRecord) -> Self {
        Self {
            id: r.id,
            provider: r.provider.as_str().into(),
            provider_account_id: r.provider_account_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn validate(body: CreateProviderAccount) -> Result<NewProviderAccount, ApiError> {
    let provider = CloudProvider::parse(&body.provider).ok_or_else(|| {
        ApiError::field(
            "provider",
            format!("{:?} is not a provider; use aws or local", body.provider),
        )
    })?;
    let account = match (provider, body.provider_account_id) {
        (CloudProvider::Local, None) => "local".to_string(),
        (CloudProvider::Local, Some(id)) if id == "local" => id,
        (CloudProvider::Local, Some(id)) => {
            return Err(ApiError::field(
                "provider_account_id",
                format!("{id:?}: the local provider has one account, \"local\""),
            ))
        }
        (CloudProvider::Aws, None) => {
            return Err(ApiError::field(
                "provider_account_id",
                "is required for aws (the 12-digit AWS account id)",
            ))
        }
        (CloudProvider::Aws, Some(id)) => {
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::field(
                    "provider_account_id",
                    format!("{id:?} is not an AWS account id (12 digits)"),
                ));
            }
            id
        }
    };
    Ok(NewProviderAccount {
        provider,
        provider_account_id: account,
    })
}

/// The organisation's provider accounts, the `local` one always among them.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<NumberedList<ProviderAccount>>> {
    filters::check_params(&query, &FILTERS)?;
    let page = NumberedPage::from_query(&query)?;
    let provider = filters::filter(&query, &FILTERS[0])?;
    state
        .store
        .ensure_provider_account(caller.organization_id, local_account())
        .await?;
    let records = state
        .store
        .list_provider_accounts(caller.organization_id)
        .await?;
    let items: Vec<ProviderAccount> = records
        .into_iter()
        .filter(|a| filters::passes(&provider, a.provider.as_str()))
        .map(ProviderAccount::from)
        .collect();
    Ok(Json(page.slice(items)))
}

/// The account every organisation has.
fn local_account() -> NewProviderAccount {
    NewProviderAccount {
        provider: CloudProvider::Local,
        provider_account_id: "local".into(),
    }
}

/// Registers a provider account (operators only).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<ProviderAccount>)> {
    caller.require_operator()?;
    require_fields(&body, &["provider"])?;
    let new = validate(parse_body(body)?)?;
    let record = state
        .store
        .create_provider_account(caller.organization_id, new)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// One provider account.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<ProviderAccount>> {
    let id = parse_id(&id, "provider account")?;
    let record = state
        .store
        .provider_account(caller.organization_id, id)
        .await?;
    Ok(Json(record.into()))
}

/// Deletes a provider account no network uses (operators only).
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "provider account")?;
    // Another organisation's account is "not found" whatever the caller's role.
    state
        .store
        .provider_account(caller.organization_id, id)
        .await?;
    caller.require_operator()?;
    state
        .store
        .delete_provider_account(caller.organization_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
