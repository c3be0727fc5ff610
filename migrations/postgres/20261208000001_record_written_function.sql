-- The data-plane metadata of one write (acr-store's metadata/write.rs, `record_written`) in one
-- call: the repository, each manifest, and each tag with the manifest it leaves, written by the
-- same statements in the same order as before, server-side, so an import's record costs one
-- round trip and one commit instead of one per statement (ten for a three-platform image with
-- one tag). Called in autocommit: the whole record commits or nothing does.
--
-- The manifests come as parallel arrays (element i of each is manifest i; p_refs is a JSON
-- array whose element i is that manifest's children or null), the tags as two parallel arrays
-- (tag i points at p_tag_digests[i]).
create function acr_record_written(
    p_registry text, p_repository text, p_now timestamptz,
    p_digests text[], p_media_types text[], p_config_media_types text[], p_sizes bigint[],
    p_architectures text[], p_oses text[], p_refs jsonb,
    p_tags text[], p_tag_digests text[])
returns void
language plpgsql volatile as $$
begin
    insert into repository_meta (registry, repository, created_at, updated_at)
    values (p_registry, p_repository, p_now, p_now)
    on conflict (registry, repository) do update set updated_at = excluded.updated_at;
    for i in 1 .. coalesce(array_length(p_digests, 1), 0) loop
        insert into manifest_meta (registry, repository, digest, media_type, config_media_type,
                                   image_size, architecture, os, refs, created_at, updated_at)
        values (p_registry, p_repository, p_digests[i], p_media_types[i],
                p_config_media_types[i], p_sizes[i], p_architectures[i], p_oses[i],
                nullif(p_refs -> (i - 1), 'null'::jsonb), p_now, p_now)
        on conflict (registry, repository, digest) do update
           set media_type = excluded.media_type,
               config_media_type = excluded.config_media_type,
               image_size = excluded.image_size,
               architecture = coalesce(excluded.architecture, manifest_meta.architecture),
               os = coalesce(excluded.os, manifest_meta.os),
               refs = excluded.refs;
    end loop;
    for i in 1 .. coalesce(array_length(p_tags, 1), 0) loop
        -- The manifest the tag leaves: its last update is now (see UNTAGGED_BY_MOVE).
        update manifest_meta m set updated_at = p_now
         where m.registry = p_registry and m.repository = p_repository
           and m.digest = (select t.digest from tag_meta t
                            where t.registry = p_registry and t.repository = p_repository
                              and t.tag = p_tags[i] and t.digest <> p_tag_digests[i]);
        insert into tag_meta (registry, repository, tag, digest, created_at, updated_at)
        values (p_registry, p_repository, p_tags[i], p_tag_digests[i], p_now, p_now)
        on conflict (registry, repository, tag) do update
           set digest = excluded.digest,
               updated_at = case when tag_meta.digest = excluded.digest
                                 then tag_meta.updated_at else excluded.updated_at end;
        update manifest_meta m set updated_at = p_now
         where m.registry = p_registry and m.repository = p_repository
           and m.digest = p_tag_digests[i];
    end loop;
end
$$;
