-- See migrations/postgres: registry deletion as an operation, and the data plane's metadata.
alter table registries add column deleting_since text
    check (deleting_since is null or deleting_since like '____-__-__T__:__:__.______Z');
alter table registries add column deletion_operation_id text;

alter table operations add column kind text not null default 'import'
    check (kind in ('import', 'deleteRegistry', 'deleteResourceGroup'));
create index operations_by_registry on operations (lower(registry_name), state);

create table repository_meta (
    registry       text not null,
    repository     text not null,
    created_at     text not null,
    updated_at     text not null,
    delete_enabled integer not null default 1,
    write_enabled  integer not null default 1,
    read_enabled   integer not null default 1,
    list_enabled   integer not null default 1,
    primary key (registry, repository)
) strict;
create table manifest_meta (
    registry          text not null,
    repository        text not null,
    digest            text not null,
    media_type        text not null,
    config_media_type text,
    image_size        integer not null default 0,
    architecture      text,
    os                text,
    refs              text check (refs is null or json_valid(refs)),
    created_at        text not null,
    updated_at        text not null,
    delete_enabled    integer not null default 1,
    write_enabled     integer not null default 1,
    read_enabled      integer not null default 1,
    list_enabled      integer not null default 1,
    primary key (registry, repository, digest)
) strict;
create index manifest_meta_by_time on manifest_meta (registry, repository, updated_at);
create table tag_meta (
    registry       text not null,
    repository     text not null,
    tag            text not null,
    digest         text not null,
    created_at     text not null,
    updated_at     text not null,
    delete_enabled integer not null default 1,
    write_enabled  integer not null default 1,
    read_enabled   integer not null default 1,
    list_enabled   integer not null default 1,
    primary key (registry, repository, tag)
) strict;
create index tag_meta_by_time on tag_meta (registry, repository, updated_at);
create index tag_meta_by_digest on tag_meta (registry, repository, digest);

create table resource_groups (
    subscription_id text not null,
    name            text not null,
    name_lower      text not null,
    location        text not null,
    tags            text check (tags is null or json_valid(tags)),
    created_at      text not null,
    deleting_since  text,
    primary key (subscription_id, name_lower)
) strict;
