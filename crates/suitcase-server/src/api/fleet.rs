//! Devices, tags and groups.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use suitcase_protocol::{
    DeviceCreate, DeviceCreated, DeviceInfo, DeviceList, DevicePatch, Filter, GroupCreate,
    GroupInfo,
};

use crate::AppState;
use crate::api::{audit, valid_name};
use crate::auth::{Cap, Manager, new_id, new_secret};
use crate::error::{ApiErr, ApiResult};
use crate::store::{DeviceRow, NewDevice};

/// The most devices one batch registers.
const MAX_BATCH: usize = 10_000;

fn check_tags(n: usize) -> ApiResult<()> {
    let max = suitcase_protocol::limits::DEVICE_TAGS_MAX;
    if n > max {
        return Err(ApiErr::bad_request(
            "too-many-tags",
            format!("{n} tags in one request; at most {max} are set or removed at once"),
        )
        .hint("use a group for large sets of devices"));
    }
    Ok(())
}

fn new_device(d: &DeviceCreate) -> ApiResult<(NewDevice, String)> {
    valid_name("device name", &d.name)?;
    check_tags(d.tags.len())?;
    for t in &d.tags {
        valid_name("tag", t)?;
    }
    if let Some(c) = &d.certificate_sha256
        && (c.len() != 64 || hex::decode(c).is_err())
    {
        return Err(ApiErr::bad_request(
            "bad-certificate-hash",
            format!("certificate_sha256 must be 64 hex digits, got {c:?}"),
        ));
    }
    let (token, hash) = new_secret("sct_d_");
    let mut push = [0u8; 16];
    let _ = getrandom::fill(&mut push);
    Ok((
        NewDevice {
            id: new_id("dev_"),
            name: d.name.clone(),
            token_hash: hash,
            cert_sha256: d
                .certificate_sha256
                .as_ref()
                .map(|c| c.to_ascii_lowercase()),
            push_id: hex::encode(push),
            tags: d.tags.clone(),
        },
        token,
    ))
}

async fn register(
    state: &AppState,
    who: &Manager,
    list: &[DeviceCreate],
) -> ApiResult<Vec<DeviceCreated>> {
    who.require(Cap::Operate)?;
    if list.len() > MAX_BATCH {
        return Err(ApiErr::bad_request(
            "batch-too-large",
            format!(
                "at most {MAX_BATCH} devices per request, got {}",
                list.len()
            ),
        ));
    }
    let mut rows = Vec::with_capacity(list.len());
    let mut out = Vec::with_capacity(list.len());
    let mut names = std::collections::HashSet::new();
    for d in list {
        if !names.insert(d.name.as_str()) {
            return Err(ApiErr::bad_request(
                "duplicate-name",
                format!("the device name {:?} appears twice in the request", d.name),
            ));
        }
        let (row, token) = new_device(d)?;
        out.push(DeviceCreated {
            id: row.id.clone(),
            name: row.name.clone(),
            token,
        });
        rows.push(row);
    }
    let all: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let name_taken = |taken: Vec<(String, String)>| {
        let mut e = ApiErr::conflict(
            "name-taken",
            format!(
                "device name(s) already registered: {}",
                taken
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        if let [(_, id)] = taken.as_slice() {
            e = e.id(id.clone());
        }
        e
    };
    let taken = state.db.device_names_taken(&all).await?;
    if !taken.is_empty() {
        return Err(name_taken(taken));
    }
    if let Err(e) = state.db.device_create_many(&rows, state.now()).await {
        // Another request registered the same name between the check and the insert: the
        // database's unique constraint decided; answer as the check would have.
        if crate::error::is_unique_violation(&e) {
            return Err(name_taken(state.db.device_names_taken(&all).await?));
        }
        return Err(e.into());
    }
    let target = if rows.len() == 1 {
        rows.first().map(|r| r.id.clone()).unwrap_or_default()
    } else {
        format!("{} devices", rows.len())
    };
    audit(
        state,
        who,
        "device.register",
        &target,
        serde_json::json!({"names": all.iter().take(20).collect::<Vec<_>>(), "count": all.len()}),
    )
    .await?;
    Ok(out)
}

/// Register a device; the answer holds its token, shown only this once.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices",
    request_body = DeviceCreate,
    responses((status = 201, body = DeviceCreated), (status = 409, body = suitcase_protocol::ApiError)),
    security(("management_token" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    who: Manager,
    crate::wire::Wire(_, d): crate::wire::Wire<DeviceCreate>,
) -> ApiResult<(StatusCode, axum::Json<DeviceCreated>)> {
    let mut out = register(&state, &who, std::slice::from_ref(&d)).await?;
    let created = out
        .pop()
        .ok_or_else(|| ApiErr::internal("registration returned nothing"))?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// Register up to 10,000 devices in one transaction.
#[utoipa::path(post, path = "/api/v1/devices/batch", tag = "devices",
    request_body = Vec<DeviceCreate>,
    responses((status = 201, body = Vec<DeviceCreated>),
              (status = 400, body = suitcase_protocol::ApiError, description = "more than 10,000 devices, a name twice, or a bad name"),
              (status = 409, body = suitcase_protocol::ApiError, description = "a name is registered already")),
    security(("management_token" = [])))]
pub(crate) async fn create_batch(
    State(state): State<AppState>,
    who: Manager,
    crate::wire::Wire(_, list): crate::wire::Wire<Vec<DeviceCreate>>,
) -> ApiResult<(StatusCode, axum::Json<Vec<DeviceCreated>>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(register(&state, &who, &list).await?),
    ))
}

async fn device_info(state: &AppState, row: DeviceRow, with_update: bool) -> ApiResult<DeviceInfo> {
    let tags = state.db.device_tags(&row.id).await?;
    let update = if with_update {
        super::device::update_status(state, &row.id).await?
    } else {
        None
    };
    let attributes = state.db.device_attributes(&row.id).await?;
    Ok(DeviceInfo {
        attributes,
        tags,
        inventory: row
            .inventory
            .as_deref()
            .and_then(|i| serde_json::from_str(i).ok()),
        id: row.id,
        name: row.name,
        vendor_id: row.vendor_id,
        class_id: row.class_id,
        sequence_number: row.sequence_number,
        last_seen: row.last_seen,
        created_at: row.created_at,
        update,
        revoked: row.revoked,
    })
}

/// The longest `?tags=` value: as many tags as a filter takes, each as long as a name may
/// be, with their commas (the OpenAPI description states it).
pub(crate) const TAGS_QUERY_MAX: usize = suitcase_protocol::limits::FILTER_TAGS_MAX
    * (suitcase_protocol::limits::NAME_MAX_CHARS + 1)
    - 1;

/// `?tags=` as a whole: bounded in length, and no control characters anywhere (trimming the
/// tags must not let a newline through).
fn check_tags_query(t: &str) -> ApiResult<()> {
    let n = t.chars().count();
    if n > TAGS_QUERY_MAX {
        return Err(ApiErr::bad_request(
            "filter-too-large",
            format!("?tags= has {n} characters; at most {TAGS_QUERY_MAX}"),
        )
        .hint("put the devices in a group and filter by the group"));
    }
    if t.chars().any(char::is_control) {
        return valid_name("tag", t);
    }
    Ok(())
}

/// Query parameters of the device list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Comma-separated tags the device must all have.
    tags: Option<String>,
    /// A group the device must be in.
    group: Option<String>,
    /// Reported vendor id.
    vendor_id: Option<String>,
    /// Reported class id.
    class_id: Option<String>,
    /// Installed sequence number below this.
    sequence_below: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
    /// Skip this many.
    offset: Option<i64>,
}

/// List devices, filtered and paged.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    params(ListQuery),
    responses((status = 200, body = Vec<DeviceInfo>)),
    security(("management_token" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Manager,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<DeviceInfo>>> {
    who.require(Cap::Read)?;
    if let Some(t) = q.tags.as_deref() {
        check_tags_query(t)?;
    }
    state.devices.flush(&state).await;
    let filter = Filter {
        tags_all: q
            .tags
            .as_deref()
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        group: q.group,
        vendor_id: q.vendor_id,
        class_id: q.class_id,
        sequence_below: q.sequence_below,
        ..Filter::default()
    };
    super::campaigns::check_filter(&filter)?;
    let rows = state
        .db
        .device_list(
            &filter,
            q.limit.unwrap_or(100).clamp(1, 1000),
            q.offset.unwrap_or(0).max(0),
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(device_info(&state, r, false).await?);
    }
    Ok(axum::Json(out))
}

async fn find(state: &AppState, id: &str) -> ApiResult<DeviceRow> {
    state
        .db
        .device_get(id)
        .await?
        .ok_or_else(|| ApiErr::not_found("device", id))
}

/// One device, with its inventory and the outcome of every step of its current or last update.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "device id or name")),
    responses((status = 200, body = DeviceInfo), (status = 404, body = suitcase_protocol::ApiError)),
    security(("management_token" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceInfo>> {
    who.require(Cap::Read)?;
    state.devices.flush(&state).await;
    let row = find(&state, &id).await?;
    Ok(axum::Json(device_info(&state, row, true).await?))
}

/// Add or remove tags.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path)), request_body = DevicePatch,
    responses((status = 200, body = DeviceInfo)),
    security(("management_token" = [])))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
    crate::wire::Wire(_, p): crate::wire::Wire<DevicePatch>,
) -> ApiResult<axum::Json<DeviceInfo>> {
    who.require(Cap::Operate)?;
    check_tags(p.add_tags.len().max(p.remove_tags.len()))?;
    for t in p.add_tags.iter().chain(&p.remove_tags) {
        valid_name("tag", t)?;
    }
    let row = find(&state, &id).await?;
    state
        .db
        .device_set_tags(&row.id, &p.add_tags, &p.remove_tags)
        .await?;
    audit(
        &state,
        &who,
        "device.tags",
        &row.id,
        serde_json::json!({"add": p.add_tags, "remove": p.remove_tags}),
    )
    .await?;
    let row = find(&state, &row.id).await?;
    Ok(axum::Json(device_info(&state, row, true).await?))
}

/// Decommission a device: its credentials stop working at once.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path)),
    responses((status = 204, description = "revoked")),
    security(("management_token" = [])))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Cap::Operate)?;
    let row = find(&state, &id).await?;
    state.db.device_revoke(&row.id).await?;
    state.devices.forget(&row.id);
    audit(
        &state,
        &who,
        "device.revoke",
        &row.id,
        serde_json::json!({"name": row.name}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue a new token for a device; the old one stops working.
#[utoipa::path(post, path = "/api/v1/devices/{id}/token", tag = "devices",
    params(("id" = String, Path)),
    responses((status = 200, body = DeviceCreated),
              (status = 404, body = suitcase_protocol::ApiError),
              (status = 409, body = suitcase_protocol::ApiError, description = "the device was decommissioned")),
    security(("management_token" = [])))]
pub(crate) async fn rotate_token(
    State(state): State<AppState>,
    who: Manager,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceCreated>> {
    who.require(Cap::Operate)?;
    let row = find(&state, &id).await?;
    if row.revoked {
        // A token for a decommissioned device would be refused at its first use.
        return Err(ApiErr::conflict(
            "device-decommissioned",
            format!(
                "device {} was decommissioned; its credentials stay revoked",
                row.name
            ),
        )
        .id(row.id)
        .hint("register it again under a new name to bring it back"));
    }
    let (token, hash) = new_secret("sct_d_");
    state.db.device_set_token(&row.id, &hash).await?;
    state.devices.forget(&row.id);
    audit(&state, &who, "device.token", &row.id, serde_json::json!({})).await?;
    Ok(axum::Json(DeviceCreated {
        id: row.id,
        name: row.name,
        token,
    }))
}

/// List groups.
#[utoipa::path(get, path = "/api/v1/groups", tag = "devices",
    responses((status = 200, body = Vec<GroupInfo>)),
    security(("management_token" = [])))]
pub(crate) async fn groups(
    State(state): State<AppState>,
    who: Manager,
) -> ApiResult<axum::Json<Vec<GroupInfo>>> {
    who.require(Cap::Read)?;
    Ok(axum::Json(
        state
            .db
            .group_list()
            .await?
            .into_iter()
            .map(|(name, _, n)| GroupInfo {
                name,
                devices: crate::store::to_u64(n),
            })
            .collect(),
    ))
}

async fn resolve(state: &AppState, names: &[String]) -> ApiResult<Vec<String>> {
    let mut ids = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for n in names {
        match state.db.device_get(n).await? {
            Some(d) => ids.push(d.id),
            None => missing.push(n.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(ApiErr::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no such device(s): {}", missing.join(", ")),
        ));
    }
    Ok(ids)
}

/// Create a group (with a push topic of its own).
#[utoipa::path(post, path = "/api/v1/groups", tag = "devices",
    request_body = GroupCreate,
    responses((status = 201, body = GroupInfo), (status = 409, body = suitcase_protocol::ApiError)),
    security(("management_token" = [])))]
pub(crate) async fn group_create(
    State(state): State<AppState>,
    who: Manager,
    crate::wire::Wire(_, g): crate::wire::Wire<GroupCreate>,
) -> ApiResult<(StatusCode, axum::Json<GroupInfo>)> {
    who.require(Cap::Operate)?;
    valid_name("group name", &g.name)?;
    let exists = || {
        ApiErr::conflict("group-exists", format!("group {:?} exists", g.name)).id(g.name.clone())
    };
    if state.db.group_push_id(&g.name).await?.is_some() {
        return Err(exists());
    }
    let ids = resolve(&state, &g.devices).await?;
    let mut push = [0u8; 16];
    let _ = getrandom::fill(&mut push);
    match state
        .db
        .group_create(&g.name, &hex::encode(push), state.now())
        .await
    {
        Ok(()) => {}
        Err(e) if crate::error::is_unique_violation(&e) => return Err(exists()),
        Err(e) => return Err(e.into()),
    }
    state.db.group_add(&g.name, &ids).await?;
    state.devices.clear_groups();
    audit(
        &state,
        &who,
        "group.create",
        &g.name,
        serde_json::json!({"devices": ids.len()}),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(GroupInfo {
            name: g.name,
            devices: ids.len() as u64,
        }),
    ))
}

async fn group_change(
    state: &AppState,
    who: &Manager,
    name: &str,
    list: &DeviceList,
    add: bool,
) -> ApiResult<StatusCode> {
    who.require(Cap::Operate)?;
    if state.db.group_push_id(name).await?.is_none() {
        return Err(ApiErr::not_found("group", name));
    }
    let ids = resolve(state, &list.devices).await?;
    if add {
        state.db.group_add(name, &ids).await?;
    } else {
        state.db.group_remove(name, &ids).await?;
    }
    state.devices.clear_groups();
    let action = if add { "group.add" } else { "group.remove" };
    audit(
        state,
        who,
        action,
        name,
        serde_json::json!({"devices": ids}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add devices to a group.
#[utoipa::path(post, path = "/api/v1/groups/{name}/devices", tag = "devices",
    params(("name" = String, Path)), request_body = DeviceList,
    responses((status = 204, description = "added")),
    security(("management_token" = [])))]
pub(crate) async fn group_add(
    State(state): State<AppState>,
    who: Manager,
    Path(name): Path<String>,
    crate::wire::Wire(_, list): crate::wire::Wire<DeviceList>,
) -> ApiResult<StatusCode> {
    group_change(&state, &who, &name, &list, true).await
}

/// Remove devices from a group.
#[utoipa::path(delete, path = "/api/v1/groups/{name}/devices", tag = "devices",
    params(("name" = String, Path)), request_body = DeviceList,
    responses((status = 204, description = "removed")),
    security(("management_token" = [])))]
pub(crate) async fn group_remove(
    State(state): State<AppState>,
    who: Manager,
    Path(name): Path<String>,
    crate::wire::Wire(_, list): crate::wire::Wire<DeviceList>,
) -> ApiResult<StatusCode> {
    group_change(&state, &who, &name, &list, false).await
}
