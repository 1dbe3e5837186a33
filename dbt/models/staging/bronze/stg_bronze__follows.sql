with source as (

    select * from {{ source('bronze', 'follows') }}

),

renamed as (

    select
        event_id,
        follower_id,
        followee_id,
        action,
        created_at,
        event_date

    from source

)

select * from renamed
