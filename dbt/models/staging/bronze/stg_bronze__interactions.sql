with source as (

    select * from {{ source('bronze', 'interactions') }}

),

renamed as (

    select
        event_id,
        event_type,
        user_id,
        post_id,
        target_user_id,
        watch_time_s,
        created_at,
        event_date

    from source

)

select * from renamed
