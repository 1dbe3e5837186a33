with source as (

    select * from {{ source('moderation', 'review_queue') }}

),

renamed as (

    select
        post_id,
        status as review_status,
        resolution,
        enqueued_at,
        resolved_at

    from source

)

select * from renamed
