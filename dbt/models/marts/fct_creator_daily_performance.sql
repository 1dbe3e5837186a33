with creator_days as (

    select * from {{ ref('stg_metrics__creator_daily') }}

),

posts_published as (

    select
        author_id as creator_id,
        created_date as activity_date,
        count(*) as posts_published

    from {{ ref('stg_bronze__posts') }}
    group by 1, 2

),

final as (

    select
        creator_days.creator_id,
        creator_days.activity_date,
        coalesce(posts_published.posts_published, 0) as posts_published,
        creator_days.views,
        creator_days.unique_viewers,
        creator_days.likes,
        creator_days.shares,
        creator_days.comments,
        creator_days.watch_time_s,
        creator_days.completions,
        creator_days.followers_gained,
        creator_days.followers_lost,
        (creator_days.likes + creator_days.shares + creator_days.comments)::double precision
            / nullif(creator_days.views, 0) as engagement_rate,
        creator_days.completions::double precision / nullif(creator_days.views, 0) as completion_rate

    from creator_days
    left join posts_published
        on posts_published.creator_id = creator_days.creator_id
        and posts_published.activity_date = creator_days.activity_date

)

select * from final
