with interactions as (

    select * from {{ ref('stg_bronze__interactions') }}
    where post_id is not null

),

posts as (

    select * from {{ ref('stg_bronze__posts') }}

),

users as (

    select * from {{ ref('stg_bronze__users') }}

),

joined as (

    select
        interactions.event_id,
        interactions.event_type,
        interactions.post_id,
        posts.author_id as creator_id,
        posts.kind as post_kind,
        posts.created_at as post_created_at,
        posts.duration_s as post_duration_s,
        interactions.user_id as viewer_id,
        users.country as viewer_country,
        users.birth_year as viewer_birth_year,
        interactions.watch_time_s,
        -- a view completes a video when it watched at least this share of its duration (as the metrics asset counts)
        coalesce(
            interactions.event_type = 'view'
            and posts.duration_s > 0
            and interactions.watch_time_s >= {{ var('completion_share') }} * posts.duration_s,
            false
        ) as is_completion,
        interactions.created_at,
        interactions.event_date as activity_date

    from interactions
    inner join posts on posts.post_id = interactions.post_id
    left join users on users.user_id = interactions.user_id

)

select * from joined
