with source as (

    select * from {{ source('metrics', 'post_metrics_daily') }}

),

renamed as (

    select
        post_id,
        author_id as creator_id,
        day as activity_date,
        views,
        unique_viewers,
        likes,
        shares,
        comments,
        watch_time_s,
        completions

    from source

)

select * from renamed
