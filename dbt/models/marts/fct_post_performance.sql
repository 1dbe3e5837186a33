{{ config(materialized='incremental', unique_key='post_id', indexes=[{'columns': ['post_id'], 'unique': True}]) }}
{#-
  Lifetime figures per post. A partition's run recomputes every post the day touched (made that day, or with
  an interaction that day) from all of that post's interactions, and replaces those posts' rows.
-#}
{%- set day = partition_day() %}

with posts as (

    select * from {{ ref('stg_bronze__posts') }}

),

interactions as (

    select * from {{ ref('int_post_interactions__enriched') }}

),

{%- if day %}

touched as (

    select post_id from posts where {{ on_partition_day('created_date') }}
    union
    select post_id from interactions where {{ on_partition_day('activity_date') }}

),

{%- endif %}

per_post as (

    select
        post_id,
        count(*) filter (where event_type = 'view' and created_at < post_created_at + interval '24 hours')
            as views_first_24h,
        count(distinct viewer_id) filter (where event_type = 'view' and created_at < post_created_at + interval '7 days')
            as reach_7d,
        count(*) filter (where event_type = 'view') as views,
        count(distinct viewer_id) filter (where event_type = 'view') as unique_viewers,
        count(*) filter (where event_type = 'like') as likes,
        count(*) filter (where event_type = 'share') as shares,
        count(*) filter (where event_type = 'comment') as comments,
        coalesce(sum(watch_time_s) filter (where event_type = 'view'), 0)::double precision as watch_time_s,
        count(*) filter (where is_completion) as completions

    from interactions
    {%- if day %}
    where post_id in (select post_id from touched)
    {%- endif %}
    group by 1

),

final as (

    select
        posts.post_id,
        posts.author_id as creator_id,
        posts.kind,
        posts.created_at,
        posts.created_date,
        coalesce(per_post.views_first_24h, 0)::bigint as views_first_24h,
        coalesce(per_post.reach_7d, 0)::bigint as reach_7d,
        coalesce(per_post.views, 0)::bigint as views,
        coalesce(per_post.unique_viewers, 0)::bigint as unique_viewers,
        coalesce(per_post.likes, 0)::bigint as likes,
        coalesce(per_post.shares, 0)::bigint as shares,
        coalesce(per_post.comments, 0)::bigint as comments,
        coalesce(per_post.watch_time_s, 0)::double precision as watch_time_s,
        coalesce(per_post.completions, 0)::bigint as completions,
        (per_post.likes + per_post.shares + per_post.comments)::double precision
            / nullif(per_post.views, 0) as engagement_rate,
        -- only a video can be watched to the end
        case when posts.kind = 'video' then per_post.completions::double precision / nullif(per_post.views, 0)
        end as completion_share

    from posts
    left join per_post on per_post.post_id = posts.post_id
    {%- if day %}
    where posts.post_id in (select post_id from touched)
    {%- endif %}

)

select * from final
