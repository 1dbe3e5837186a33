with source as (

    select * from {{ source('bronze', 'media') }}

),

renamed as (

    select
        media_id,
        post_id,
        uri as media_uri,
        content_type,
        size_bytes,
        sha256,
        created_at,
        event_date

    from source

)

select * from renamed
