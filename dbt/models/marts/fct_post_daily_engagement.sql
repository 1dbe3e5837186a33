{#- unique_key is the day: a partition's run deletes that day's rows and inserts them anew -#}
{{ config(materialized='incremental', unique_key='activity_date') }}

with posts as (

    select * from {{ ref('stg_bronze__posts') }}

),

interactions as (

    select * from {{ ref('stg_bronze__interactions') }}
    where post_id is not null and {{ on_partition_day('event_date') }}

),

daily as (

    select
        post_id,
        event_date as activity_date,
        count(*) filter (where event_type = 'view') as views,
        count(*) filter (where event_type = 'like') as likes,
        count(*) filter (where event_type = 'share') as shares,
        count(*) filter (where event_type = 'comment') as comments,
        coalesce(sum(watch_time_s) filter (where event_type = 'view'), 0)::double precision as watch_time_s,
        count(distinct user_id) filter (where event_type = 'view') as unique_viewers

    from interactions
    group by 1, 2

),

final as (

    select
        posts.post_id,
        posts.author_id,
        posts.kind,
        daily.activity_date,
        (daily.activity_date - posts.created_date) as days_since_post,
        daily.views,
        daily.likes,
        daily.shares,
        daily.comments,
        daily.watch_time_s,
        daily.unique_viewers,
        (daily.likes + daily.shares + daily.comments)::double precision
            / nullif(daily.views, 0) as engagement_rate

    from daily
    inner join posts on posts.post_id = daily.post_id

)

select * from final
