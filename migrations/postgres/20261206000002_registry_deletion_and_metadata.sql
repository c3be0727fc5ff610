-- Deleting a registry is an operation: the registry keeps its row (and its name) in state
-- Deleting until its content is gone from the backend, then the row goes.
alter table registries add column deleting_since timestamptz;
alter table registries add column deletion_operation_id text;

-- Operations are imports or registry deletions; `request` holds the import (`{}` otherwise).
alter table operations add column kind text not null default 'import'
    check (kind in ('import', 'deleteRegistry', 'deleteResourceGroup'));
-- Cancelling the imports into a registry and waiting for their workers to stop.
create index operations_by_registry on operations (lower(registry_name), state);

-- The data plane's metadata (ACR's /acr/v1): what the distribution API does not keep, per
-- registry (lowercased name) and repository inside it. Written by the workers for imports and
-- by the login servers for pushes and deletes; deleted with the registry.
create table repository_meta (
    registry       text not null,
    repository     text not null,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    delete_enabled boolean not null default true,
    write_enabled  boolean not null default true,
    read_enabled   boolean not null default true,
    list_enabled   boolean not null default true,
    primary key (registry, repository)
);
create table manifest_meta (
    registry          text not null,
    repository        text not null,
    digest            text not null,
    media_type        text not null,
    config_media_type text,
    image_size        bigint not null default 0,
    architecture      text,
    os                text,
    refs              jsonb,            -- an index's children: [{"digest","architecture","os"}]
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    delete_enabled    boolean not null default true,
    write_enabled     boolean not null default true,
    read_enabled      boolean not null default true,
    list_enabled      boolean not null default true,
    primary key (registry, repository, digest)
);
create index manifest_meta_by_time on manifest_meta (registry, repository, updated_at);
create table tag_meta (
    registry       text not null,
    repository     text not null,
    tag            text not null,
    digest         text not null,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    delete_enabled boolean not null default true,
    write_enabled  boolean not null default true,
    read_enabled   boolean not null default true,
    list_enabled   boolean not null default true,
    primary key (registry, repository, tag)
);
create index tag_meta_by_time on tag_meta (registry, repository, updated_at);
create index tag_meta_by_digest on tag_meta (registry, repository, digest);

-- Resource groups created with PUT (a registry may still live in a group never created; such
-- a group exists while it holds registries). A group being deleted keeps its row until its
-- registries are gone.
create table resource_groups (
    subscription_id text not null,
    name            text not null,
    name_lower      text not null,
    location        text not null,
    tags            jsonb,
    created_at      timestamptz not null default now(),
    deleting_since  timestamptz,
    primary key (subscription_id, name_lower)
);
