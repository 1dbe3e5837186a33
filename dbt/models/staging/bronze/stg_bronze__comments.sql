with source as (

    select * from {{ source('bronze', 'comments') }}

),

renamed as (

    select
        comment_id,
        post_id,
        user_id,
        text as comment_text,
        created_at,
        event_date

    from source

)

select * from renamed
