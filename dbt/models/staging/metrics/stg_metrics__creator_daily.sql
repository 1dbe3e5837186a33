with source as (

    select * from {{ source('metrics', 'creator_metrics_daily') }}

),

renamed as (

    select
        creator_id,
        day as activity_date,
        views,
        unique_viewers,
        likes,
        shares,
        comments,
        watch_time_s,
        completions,
        followers_gained,
        followers_lost

    from source

)

select * from renamed
