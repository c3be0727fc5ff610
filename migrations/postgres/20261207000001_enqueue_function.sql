-- The enqueue in one call (acr-store's pg.rs, `enqueue`): the queue limits' locks, the counts,
-- the insert and its NOTIFY run server-side, so an accepted import costs one round trip and
-- one commit instead of seven round trips. Called in autocommit: the locks are held until the
-- statement's own commit.
--
-- Limits (null: none). The per-subscription count is taken under that subscription's own
-- advisory lock (exclusive), so only one subscription's enqueues queue behind each other. The
-- total is counted under the queue's advisory lock taken *shared* (p_exclusive false): the
-- committed unfinished operations plus the enqueues holding the lock now (pg_locks, read
-- before the count: one that committed before the read is in the count, one that took the
-- lock after it sees this one in its own read). When all of them might not fit, the outcome is
-- 'retry' and the caller calls again with p_exclusive, which waits for the others to commit
-- and counts exactly. Each statement of a volatile PL/pgSQL function reads a snapshot of its
-- own, so the counts see everything committed before the locks were granted.
--
-- Outcomes: 'created' or 'existing' (the operation's columns as acr-store's COLUMNS name
-- them), 'limit' (n_sub, n_total: the counts that reached a limit; no operation) or 'retry'.
create function acr_enqueue(
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
declare
    v_in_flight bigint := 1;
    v_exists boolean;
    v_sub bigint;
    v_total bigint;
    v_outcome text;
begin
    if p_max_per_subscription is not null or p_max_total is not null then
        if p_exclusive then
            perform pg_advisory_xact_lock(p_queue_lock);
        else
            perform pg_advisory_xact_lock_shared(p_queue_lock);
        end if;
        if p_max_per_subscription is not null then
            perform pg_advisory_xact_lock(p_subscription_locks, hashtext(p_subscription_id));
        end if;
        if not p_exclusive and p_max_total is not null then
            select count(*) into v_in_flight from pg_locks l
             where l.locktype = 'advisory' and l.mode = 'ShareLock' and l.granted
               and l.classid::bigint = (p_queue_lock >> 32)
               and l.objid::bigint = (p_queue_lock & 4294967295) and l.objsubid = 1;
        end if;
        select exists (select 1 from operations o where o.id = p_id),
               count(*) filter (where o.subscription_id = p_subscription_id), count(*)
          into v_exists, v_sub, v_total
          from operations o where o.state in ('Queued', 'Running') and o.kind = 'import';
        if not v_exists then
            -- The others in flight count as if they will all insert.
            v_total := v_total + greatest(v_in_flight, 1) - 1;
            if p_max_per_subscription is not null and v_sub >= p_max_per_subscription then
                return query select 'limit'::text, v_sub, v_total, null::text, null::text,
                    null::text, null::text, null::text, null::text, null::text, null::text,
                    null::integer, null::jsonb, null::double precision, null::text, null::text,
                    null::integer, null::timestamptz, null::timestamptz, null::timestamptz;
                return;
            end if;
            if p_max_total is not null and v_total >= p_max_total then
                return query select case when p_exclusive then 'limit' else 'retry' end,
                    v_sub, v_total, null::text, null::text,
                    null::text, null::text, null::text, null::text, null::text, null::text,
                    null::integer, null::jsonb, null::double precision, null::text, null::text,
                    null::integer, null::timestamptz, null::timestamptz, null::timestamptz;
                return;
            end if;
        end if;
    end if;
    insert into operations (id, subscription_id, resource_group, registry_name, location,
                            api_version, request, credentials, kind)
    values (p_id, p_subscription_id, p_resource_group, p_registry_name, p_location,
            p_api_version, p_request, p_credentials, p_kind)
    on conflict (id) do nothing;
    if found then
        v_outcome := 'created';
        perform pg_notify(p_channel, p_id);
    else
        v_outcome := 'existing';
    end if;
    return query select v_outcome, null::bigint, null::bigint, o.id, o.subscription_id,
        o.resource_group, o.registry_name, o.location, o.api_version, o.kind, o.state,
        o.attempt, o.progress, o.percent_complete, o.error_code, o.error_message,
        o.error_status, o.created_at, o.started_at, o.ended_at
      from operations o where o.id = p_id;
end
$$;
