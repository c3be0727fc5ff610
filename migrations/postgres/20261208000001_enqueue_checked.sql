-- An import's enqueue that first checks the target registry is still the row the API checked
-- the request against (acr-store's pg.rs, `enqueue`; the API reads that row from this
-- process's memory, `registry_cache`). p_registry_version is the row's xmin as the API read
-- it: any update of the row (its properties, its deletion starting), or its deletion and
-- re-creation, gives the row a new xmin. A row that changed, went, or is being deleted gives
-- the outcome 'stale' and no operation: the API reads the row again and checks the request
-- anew. Otherwise this is acr_enqueue, in the same statement and so the same commit.
create function acr_enqueue_checked(
    p_registry_version text,
    p_id text, p_subscription_id text, p_resource_group text, p_registry_name text,
    p_location text, p_api_version text, p_request jsonb, p_credentials jsonb, p_kind text,
    p_channel text, p_max_per_subscription bigint, p_max_total bigint, p_exclusive boolean,
    p_queue_lock bigint, p_subscription_locks integer)
returns table (
    outcome text, n_sub bigint, n_total bigint,
    id text, subscription_id text, resource_group text, registry_name text, location text,
    api_version text, kind text, state text, attempt integer, progress jsonb,
    percent_complete double precision, error_code text, error_message text,
    error_status integer, created_at timestamptz, started_at timestamptz,
    ended_at timestamptz)
language plpgsql volatile as $$
#variable_conflict use_column
begin
    if not exists (select 1 from registries r
                    where r.name_lower = lower(p_registry_name)
                      and r.subscription_id = p_subscription_id
                      and r.xmin::text = p_registry_version
                      and r.deleting_since is null) then
        return query select 'stale'::text, null::bigint, null::bigint, null::text, null::text,
            null::text, null::text, null::text, null::text, null::text, null::text,
            null::integer, null::jsonb, null::double precision, null::text, null::text,
            null::integer, null::timestamptz, null::timestamptz, null::timestamptz;
        return;
    end if;
    return query select * from acr_enqueue(p_id, p_subscription_id, p_resource_group,
        p_registry_name, p_location, p_api_version, p_request, p_credentials, p_kind,
        p_channel, p_max_per_subscription, p_max_total, p_exclusive, p_queue_lock,
        p_subscription_locks);
end
$$;
